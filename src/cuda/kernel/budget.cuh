// src/cuda/kernel/budget.cuh: stage 5 (budgets, docs/SPEC.md) on the GPU for one sequence. For
// every query head, with its own Q and K (no pooling, no stride), the last R = min(b, N) query
// rows:
//   mass_partials_kernel  per row and key block n: (max, sum of 2^(x - max)) over keys u <= t of
//                         the block, in log2 units; tensor cores, fp32 accumulation
//   mass_reduce_kernel    lse_t over blocks, then a_h[n] = mean_t sum_n(t) 2^(max_n(t) - lse_t)
//   budget_kernel         n_h = rules::budget_cut of a_h, clamped; the exact last-block orders
// One pass of Q K^T: the per-block partials carry all that a_h needs.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/rules.h"
#include "cuda/kernel/mma.cuh"
#include "cuda/kernel/online_lse.cuh"
#include "cuda/kernel/sort.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda::kernel {

/// \brief Grid (ceil(nb / kBlocksPerCta), H); 256 threads, 16 of the last rows per warp.
template <typename T, int kHeadDim>
__global__ void __launch_bounds__(MassTraits<kHeadDim>::kThreads)
    mass_partials_kernel(const __grid_constant__ BudgetParams p) {
  using Traits = MassTraits<kHeadDim>;
  constexpr int kRows = Traits::kRows;
  constexpr int kThreads = Traits::kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [128 last rows, kHeadDim]
  T* sK = sQ + kRows * kHeadDim;           // [2][64 keys, kHeadDim]

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane / 4;
  const int c4 = lane % 4;
  const int head = blockIdx.y;
  const int kv_head = head / p.group_size;
  const int N = p.len;
  const int R = p.last_rows;
  const int first_row = N - R;  // position of last-row 0
  const int tiles_per_block = p.block_size / 64;
  const int n0 = blockIdx.x * Traits::kBlocksPerCta;
  const int n1 = min(n0 + Traits::kBlocksPerCta, p.num_blocks);
  const int num_tiles = (n1 - n0) * tiles_per_block;

  const T* gQ = static_cast<const T*>(p.q) + p.token_start * p.q_stride_n + head * p.q_stride_h;
  const T* gK = static_cast<const T*>(p.k) + p.token_start * p.k_stride_n + kv_head * p.k_stride_h;
  load_tile<T, kRows, kHeadDim, kThreads>(sQ, gQ, p.q_stride_n, first_row, N, tid);
  load_tile<T, 64, kHeadDim, kThreads>(sK, gK, p.k_stride_n, n0 * p.block_size, N, tid);
  cp_async_commit();

  std::uint32_t rQ[kHeadDim / 16][4];
  float rS[8][4];
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  const int local_a = warp * 16 + g;  // the thread's rows: local_a, local_a + 8
  for (int t = 0; t < num_tiles; ++t) {
    const int n = n0 + t / tiles_per_block;
    const int k0 = n0 * p.block_size + t * 64;  // tiles of a chunk are contiguous keys
    if (t + 1 < num_tiles) {
      const int k1 = k0 + 64;
      load_tile<T, 64, kHeadDim, kThreads>(sK + ((t + 1) & 1) * 64 * kHeadDim, gK, p.k_stride_n, k1,
                                           N, tid);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (t == 0) load_a_fragments<T, kHeadDim>(rQ, sQ, warp * 16, lane);
    warp_qk<T, kHeadDim>(rS, rQ, sK + (t & 1) * 64 * kHeadDim, lane);
    const bool needs_mask = k0 + 64 > first_row + 1;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = k0 + nt * 8 + 2 * c4 + (e & 1);
        const int query = first_row + local_a + (e >= 2 ? 8 : 0);
        rS[nt][e] =
            (needs_mask && !rules::causal(query, key)) ? -INFINITY : rS[nt][e] * p.scale_log2;
      }
    }
    online_lse_update<8>(rS, row_max, row_sum);
    // End of key block n: write this block's partials and restart.
    if ((t + 1) % tiles_per_block == 0) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(row_sum[r]);
        const int local = local_a + r * 8;
        if (c4 == 0 && local < R) {
          p.partials[(static_cast<std::int64_t>(head) * p.num_blocks + n) * R + local] =
              make_float2(row_max[r], sum);
        }
        row_max[r] = -INFINITY;
        row_sum[r] = 0.0f;
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
}

/// \brief Grid H, 256 threads. a_h[n] = (1/R) sum_t sum_n(t) 2^(max_n(t) - lse2_t).
static __global__ void mass_reduce_kernel(const __grid_constant__ BudgetParams p) {
  __shared__ float lse2[128];
  const int head = blockIdx.x;
  const int R = p.last_rows;
  const int nb = p.num_blocks;
  const float2* part = p.partials + static_cast<std::int64_t>(head) * nb * R;  // [nb, R]
  for (int r = threadIdx.x; r < R; r += blockDim.x) {
    float mx = -INFINITY, sum = 0.0f;
    for (int n = 0; n < nb; ++n) {
      const float2 v = part[static_cast<std::int64_t>(n) * R + r];
      if (!(v.y > 0.0f)) continue;
      const float new_max = fmaxf(mx, v.x);
      sum = sum * exp2f(mx - new_max) + v.y * exp2f(v.x - new_max);
      mx = new_max;
    }
    lse2[r] = sum > 0.0f ? mx + log2f(sum) : INFINITY;
  }
  __syncthreads();
  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int num_warps = blockDim.x / 32;
  for (int n = warp; n < nb; n += num_warps) {
    float acc = 0.0f;
    for (int r = lane; r < R; r += 32) {
      const float2 v = part[static_cast<std::int64_t>(n) * R + r];
      if (v.y > 0.0f) {
        acc += v.y * exp2f(v.x - lse2[r]);
      } else if (isnan(v.y)) {
        acc = NAN;  // NaN in Q or K: a_h is NaN and the budget becomes nb (docs/SPEC.md stage 5)
      }
    }
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, off);
    if (lane == 0) p.mass[static_cast<std::int64_t>(head) * nb + n] = acc / static_cast<float>(R);
  }
}

/// \brief Stage 5 budgets (after the masses), and the exact last-block orders. Grid H,
/// SortTraits::kThreads threads, next_pow2(nb) keys of shared memory.
/// n_h = smallest c whose top-c sum of a_h reaches gamma * sum (sums in double, in ranked
/// order); nb when a_h has a NaN; then clamped to [min_blocks, max_blocks] and nb.
static __global__ void budget_kernel(const __grid_constant__ BudgetParams p) {
  extern __shared__ std::uint64_t keys[];  // [next_pow2(nb)]
  __shared__ int budget;
  const int head = blockIdx.x;
  const int nb = p.num_blocks;
  const float* mass = p.mass + static_cast<std::int64_t>(head) * nb;
  for (int n = threadIdx.x; n < nb; n += blockDim.x) {
    keys[n] =
        (static_cast<std::uint64_t>(rank_class(mass[n])) << 32) | static_cast<std::uint32_t>(n);
  }
  bitonic_sort(keys, nb, next_pow2(nb));
  if (threadIdx.x == 0) {
    // rules::budget_cut over a_h in ranked order (descending; a NaN anywhere gives nb either way).
    const std::int64_t nh = rules::budget_cut(
        [&](std::int64_t i) { return static_cast<double>(mass[keys[i] & 0xffffffffu]); }, nb,
        p.gamma);
    budget = static_cast<int>(rules::clamp_budget(nh, p.min_blocks, p.max_blocks, nb));
    p.budgets[head] = budget;
  }
  __syncthreads();
  if (!p.exact_last) return;
  // Exact last block: forced blocks first (0, then the diagonal), then by a_h.
  if (threadIdx.x == 0) {
    std::int16_t* order = p.last_order + static_cast<std::int64_t>(head) * nb;
    const int m = nb - 1;
    int c = 0;
    if (is_forced(0, m, p.keep_sink, p.keep_diagonal)) order[c++] = 0;
    if (m != 0 && is_forced(m, m, p.keep_sink, p.keep_diagonal))
      order[c++] = static_cast<std::int16_t>(m);
    for (int i = 0; i < nb; ++i) {
      const int n = static_cast<int>(keys[i] & 0xffffffffu);
      if (!is_forced(n, m, p.keep_sink, p.keep_diagonal)) order[c++] = static_cast<std::int16_t>(n);
    }
  }
}

}  // namespace proxyattn::cuda::kernel
