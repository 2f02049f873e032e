// src/cuda/kernel/select.cuh: SPEC.md stages 5 (budgets) and 6 (selection) on the GPU for one
// sequence. Rankings are bitonic sorts in shared memory of 64-bit keys
//   (rank class << 32) | n,  rank class = 0 for forced blocks, ~order(score) for numbers
//   (larger score, smaller key), 0xffffffff for NaN,
// so one ascending sort gives: forced first, then scores descending, NaN last, ties to smaller n.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/rules.h"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda::kernel {

constexpr std::uint64_t kPadKey = ~std::uint64_t{0};

/// \brief Rank class of a score: monotone decreasing in the score, NaN last, never 0.
__device__ __forceinline__ std::uint32_t rank_class(float score) {
  if (isnan(score)) return 0xffffffffu;
  const std::uint32_t bits = __float_as_uint(score);
  const std::uint32_t ordered = (bits >> 31) ? ~bits : (bits | 0x80000000u);  // increasing
  return ~ordered;  // >= 0x003fffff for any number, so forced blocks (0) come first
}

__device__ __forceinline__ bool is_forced(int n, int m, const SelectParams& p) {
  return rules::is_forced(m, n, p.keep_sink != 0, p.keep_diagonal != 0);
}

/// \brief Sorts keys[0, size) ascending, padding to the next power of two with kPadKey.
__device__ void bitonic_sort(std::uint64_t* keys, int size, int padded) {
  for (int i = size + threadIdx.x; i < padded; i += blockDim.x) keys[i] = kPadKey;
  __syncthreads();
  for (int k = 2; k <= padded; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < padded; i += blockDim.x) {
        const int partner = i ^ j;
        if (partner > i) {
          const std::uint64_t a = keys[i];
          const std::uint64_t b = keys[partner];
          const bool ascending = (i & k) == 0;
          if ((a > b) == ascending) {
            keys[i] = b;
            keys[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

__device__ __forceinline__ int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

/// \brief Stage 5 budgets, and the exact last-block orders. Grid H.
/// n_h = smallest c whose top-c sum of a_h reaches gamma * sum (sums in double, in ranked
/// order); nb when a_h has a NaN; then clamped to [min_blocks, max_blocks] and nb.
__global__ void budget_kernel(const __grid_constant__ SelectParams p) {
  extern __shared__ std::uint64_t keys[];  // [next_pow2(nb)]
  __shared__ int budget;
  const int head = blockIdx.x;
  const int nb = p.num_blocks;
  const float* mass = p.mass + static_cast<std::int64_t>(head) * nb;
  for (int n = threadIdx.x; n < nb; n += blockDim.x) {
    keys[n] = (static_cast<std::uint64_t>(rank_class(mass[n])) << 32) | static_cast<std::uint32_t>(n);
  }
  bitonic_sort(keys, nb, next_pow2(nb));
  if (threadIdx.x == 0) {
    double total = 0.0;
    bool any_nan = false;
    for (int i = 0; i < nb; ++i) {
      const float a = mass[keys[i] & 0xffffffffu];
      any_nan |= isnan(a);
      total += static_cast<double>(a);
    }
    std::int64_t nh = nb;
    if (!any_nan && isfinite(total) && total > 0.0) {
      const double target = p.gamma * total;
      double prefix = 0.0;
      for (int i = 0; i < nb; ++i) {
        prefix += static_cast<double>(mass[keys[i] & 0xffffffffu]);
        if (prefix >= target) {
          nh = i + 1;
          break;
        }
      }
    }
    nh = rules::clamp_budget(nh, p.min_blocks, p.max_blocks, nb);
    budget = static_cast<int>(nh);
    p.budgets[head] = budget;
  }
  __syncthreads();
  if (!p.exact_last) return;
  // Exact last block: forced blocks first (0, then the diagonal), then by a_h.
  if (threadIdx.x == 0) {
    std::int16_t* order = p.last_order + static_cast<std::int64_t>(head) * nb;
    const int m = nb - 1;
    int c = 0;
    if (is_forced(0, m, p)) order[c++] = 0;
    if (m != 0 && is_forced(m, m, p)) order[c++] = static_cast<std::int16_t>(m);
    for (int i = 0; i < nb; ++i) {
      const int n = static_cast<int>(keys[i] & 0xffffffffu);
      if (!is_forced(n, m, p)) order[c++] = static_cast<std::int16_t>(n);
    }
  }
}

/// \brief Stage 6: the ranking of row m of group j, and counts of the group's heads. Grid
/// (nb, g). The last row also fills last_order under last_block_selection = proxy.
__global__ void select_kernel(const __grid_constant__ SelectParams p) {
  extern __shared__ std::uint64_t keys[];  // [next_pow2(m + 1)]
  const int m = p.num_blocks - 1 - blockIdx.x;  // longest rows first
  const int j = blockIdx.y;
  const int nb = p.num_blocks;
  const std::int64_t row = static_cast<std::int64_t>(j) * nb * (nb + 1) / 2 +
                           static_cast<std::int64_t>(m) * (m + 1) / 2;
  const float* scores = p.block_scores + row;
  for (int n = threadIdx.x; n <= m; n += blockDim.x) {
    const std::uint32_t cls = is_forced(n, m, p) ? 0u : rank_class(scores[n]);
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
__global__ void density_kernel(const __grid_constant__ SelectParams p) {
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
__global__ void dense_plan_kernel(const __grid_constant__ SelectParams p, int num_proxy_heads) {
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
