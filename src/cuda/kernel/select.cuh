// src/cuda/kernel/select.cuh: stage 6 (selection, docs/SPEC.md) on the GPU for one sequence: the
// group rankings of every query block (bitonic sorts, sort.cuh), the heads' counts from their
// budgets, densities, and the plan of a sequence that runs dense.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/rules.h"
#include "cuda/kernel/sort.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda::kernel {

/// \brief Stage 6: the ranking of row m of group j, and counts of the group's heads. Grid
/// (nb, g). The last row also fills last_order under last_block_selection = proxy.
static __global__ void select_kernel(const __grid_constant__ SelectParams p) {
  extern __shared__ std::uint64_t keys[];       // [next_pow2(m + 1)]
  const int m = p.num_blocks - 1 - blockIdx.x;  // longest rows first
  const int j = blockIdx.y;
  const int nb = p.num_blocks;
  const std::int64_t row =
      static_cast<std::int64_t>(j) * nb * (nb + 1) / 2 + static_cast<std::int64_t>(m) * (m + 1) / 2;
  const float* scores = p.block_scores + row;
  for (int n = threadIdx.x; n <= m; n += blockDim.x) {
    const std::uint32_t cls =
        is_forced(n, m, p.keep_sink, p.keep_diagonal) ? 0u : rank_class(scores[n]);
    keys[n] = (static_cast<std::uint64_t>(cls) << 32) | static_cast<std::uint32_t>(n);
  }
  bitonic_sort(keys, m + 1, next_pow2(m + 1));
  std::int16_t* order = p.group_order + row;
  for (int i = threadIdx.x; i <= m; i += blockDim.x) {
    order[i] = static_cast<std::int16_t>(keys[i] & 0xffffffffu);
  }
  const std::int64_t forced = rules::num_forced(m, p.keep_sink != 0, p.keep_diagonal != 0);
  for (int h = j * p.heads_per_group + threadIdx.x; h < (j + 1) * p.heads_per_group;
       h += blockDim.x) {
    const std::int64_t c = p.forced_density > 0.0
                               ? rules::count_from_density(p.forced_density, m, forced)
                               : rules::count_from_budget(p.budgets[h], m, forced);
    p.counts[static_cast<std::int64_t>(h) * nb + m] = static_cast<std::int32_t>(c);
  }
  if (m == nb - 1 && !p.exact_last) {
    for (int idx = threadIdx.x; idx < p.heads_per_group * nb; idx += blockDim.x) {
      const int h = j * p.heads_per_group + idx / nb;
      p.last_order[static_cast<std::int64_t>(h) * nb + idx % nb] =
          static_cast<std::int16_t>(keys[idx % nb] & 0xffffffffu);
    }
  }
}

/// \brief density[h] = selected causal blocks / tri(nb). Grid H, 256 threads.
static __global__ void density_kernel(const __grid_constant__ SelectParams p) {
  __shared__ long long partial[256];
  const int head = blockIdx.x;
  const int nb = p.num_blocks;
  long long sum = 0;
  for (int m = threadIdx.x; m < nb; m += blockDim.x) {
    sum += p.counts[static_cast<std::int64_t>(head) * nb + m];
  }
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const double tri = static_cast<double>(nb) * (nb + 1) / 2.0;
    p.density[head] = nb == 0 ? 1.0f : static_cast<float>(static_cast<double>(partial[0]) / tri);
  }
}

/// \brief A sequence that runs dense: identity orders, full counts, budgets nb, density 1.
/// Grid (nb), 256 threads.
static __global__ void dense_plan_kernel(const __grid_constant__ SelectParams p,
                                         int num_proxy_heads) {
  const int m = blockIdx.x;
  const int nb = p.num_blocks;
  const std::int64_t tri = static_cast<std::int64_t>(nb) * (nb + 1) / 2;
  for (int idx = threadIdx.x; idx < num_proxy_heads * (m + 1); idx += blockDim.x) {
    const int j = idx / (m + 1);
    const int n = idx % (m + 1);
    p.group_order[j * tri + static_cast<std::int64_t>(m) * (m + 1) / 2 + n] =
        static_cast<std::int16_t>(n);
  }
  for (int h = threadIdx.x; h < p.num_qo_heads; h += blockDim.x) {
    const std::int64_t at = static_cast<std::int64_t>(h) * nb + m;
    p.counts[at] = m + 1;
    p.last_order[at] = static_cast<std::int16_t>(m);
    if (m == 0) {
      p.budgets[h] = nb;
      p.density[h] = 1.0f;
    }
  }
}

}  // namespace proxyattn::cuda::kernel
