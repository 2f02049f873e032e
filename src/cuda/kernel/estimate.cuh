// src/cuda/kernel/estimate.cuh: docs/SPEC.md stages 2-4 on the GPU for one sequence.
//   pool_kernel         Qp_j, Kp_j: fp32 sums over the group's heads in index order, times the
//                       fp32 1/count, rounded to the input dtype (so the logits use tensor cores)
//   proxy_pass_kernel<0>  lse_j[t] over sampled keys u <= t (online, never N x N); with the keys
//                         split into chunks (grid z), per-chunk partials and proxy_lse_merge_kernel
//   proxy_pass_kernel<1>  S_j[m][n] = max over sampled (t, u) of L_j[t, u] - lse_j[t], reduced
//                         per warp and merged into block_scores by an order-independent atomic max
// The logits are recomputed in the second pass instead of stored: two passes of tensor-core work
// cost less than (N / s) x nb partial maxima in memory.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/rules.h"
#include "cuda/kernel/mma.cuh"
#include "cuda/kernel/online_lse.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda::kernel {

/// \brief Proxy pooling. Grid (num_samples, g); threads stride over head_dim.
template <typename T>
__global__ void pool_kernel(const __grid_constant__ EstimateParams p, int head_dim) {
  const int r = blockIdx.x;  // sample index; token r * stride of the sequence
  const int j = blockIdx.y;  // group
  const std::int64_t token = p.token_start + static_cast<std::int64_t>(r) * p.stride;
  const T* gQ = static_cast<const T*>(p.q) + token * p.q_stride_n;
  const T* gK = static_cast<const T*>(p.k) + token * p.k_stride_n;
  T* gQp =
      static_cast<T*>(p.proxy_q) + (static_cast<std::int64_t>(j) * p.num_samples + r) * head_dim;
  T* gKp =
      static_cast<T*>(p.proxy_k) + (static_cast<std::int64_t>(j) * p.num_samples + r) * head_dim;
  for (int d = threadIdx.x; d < head_dim; d += blockDim.x) {
    float q_sum = 0.0f;
    for (int i = 0; i < p.q_heads_per_group; ++i) {
      q_sum += ElemTraits<T>::to_float(gQ[(j * p.q_heads_per_group + i) * p.q_stride_h + d]);
    }
    float k_sum = 0.0f;
    for (int i = 0; i < p.kv_heads_per_group; ++i) {
      k_sum += ElemTraits<T>::to_float(gK[(j * p.kv_heads_per_group + i) * p.k_stride_h + d]);
    }
    gQp[d] = ElemTraits<T>::from_float(__fmul_rn(q_sum, p.q_inv_count));
    gKp[d] = ElemTraits<T>::from_float(__fmul_rn(k_sum, p.k_inv_count));
  }
}

/// \brief Fills n floats with v (block scores start at -inf).
static __global__ void fill_kernel(float* data, std::int64_t n, float v) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    data[i] = v;
  }
}

/// \brief Atomic max on a float that holds a float (any sign, -inf included); order-independent,
/// so the result does not depend on scheduling.
__device__ __forceinline__ void atomic_max_float(float* addr, float v) {
  if ((__float_as_uint(v) >> 31) == 0) {
    atomicMax(reinterpret_cast<int*>(addr), __float_as_int(v));
  } else {
    atomicMin(reinterpret_cast<unsigned int*>(addr), __float_as_uint(v));
  }
}

/// \brief Both passes over the sampled proxy sequence of group j. Grid (ceil(S / 64), g, key
/// chunks), 128 threads: CTA (rt, j, z) takes key tiles [z C, min((z + 1) C, rt + 1)) of row tile
/// rt (C = key_chunk_tiles). kPass 0 writes lse (log2 units) or, with several chunks, the chunk's
/// partials; kPass 1 merges block scores.
template <typename T, int kHeadDim, int kPass>
__global__ void __launch_bounds__(EstimateTraits<kHeadDim>::kThreads)
    proxy_pass_kernel(const __grid_constant__ EstimateParams p) {
  using Traits = EstimateTraits<kHeadDim>;
  constexpr int kRows = Traits::kRows;
  constexpr int kThreads = Traits::kThreads;
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [64 sampled rows, kHeadDim]
  T* sK = sQ + kRows * kHeadDim;           // [2][64 sampled keys, kHeadDim]

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int g = lane / 4;
  const int c4 = lane % 4;
  const int j = blockIdx.y;
  // Longest rows first: row tile rt walks key tiles 0..rt.
  const int rt = gridDim.x - 1 - blockIdx.x;
  const int r0 = rt * kRows;
  const int S = p.num_samples;
  const T* gQp = static_cast<const T*>(p.proxy_q) + static_cast<std::int64_t>(j) * S * kHeadDim;
  const T* gKp = static_cast<const T*>(p.proxy_k) + static_cast<std::int64_t>(j) * S * kHeadDim;
  float* lse2 = p.proxy_lse + static_cast<std::int64_t>(j) * S;  // [S] log2 units
  const float scale_log2 = p.scale * 1.4426950408889634f;
  const int R = p.block_size / p.stride;  // sampled rows (and keys) per block
  const std::int64_t tri = static_cast<std::int64_t>(p.num_blocks) * (p.num_blocks + 1) / 2;
  float* scores = p.block_scores + j * tri;
  const int kt_begin = static_cast<int>(blockIdx.z) * p.key_chunk_tiles;
  if (kt_begin > rt) return;  // past the causal range of this row tile
  const int kt_end = min(kt_begin + p.key_chunk_tiles, rt + 1);

  load_tile<T, kRows, kHeadDim, kThreads>(sQ, gQp, kHeadDim, r0, S, tid);
  load_tile<T, 64, kHeadDim, kThreads>(sK + (kt_begin & 1) * 64 * kHeadDim, gKp, kHeadDim,
                                       kt_begin * 64, S, tid);
  cp_async_commit();

  const int row_a = r0 + warp * 16 + g;  // the thread's two rows: row_a and row_a + 8
  float row_max[2] = {-INFINITY, -INFINITY};
  float row_sum[2] = {0.0f, 0.0f};
  float row_lse[2] = {0.0f, 0.0f};
  if (kPass == 1) {
    row_lse[0] = row_a < S ? lse2[row_a] : 0.0f;
    row_lse[1] = row_a + 8 < S ? lse2[row_a + 8] : 0.0f;
  }
  std::uint32_t rQ[kHeadDim / 16][4];
  float rS[8][4];
  for (int kt = kt_begin; kt < kt_end; ++kt) {
    if (kt + 1 < kt_end) {
      const int k0 = (kt + 1) * 64;
      load_tile<T, 64, kHeadDim, kThreads>(sK + ((kt + 1) & 1) * 64 * kHeadDim, gKp, kHeadDim, k0,
                                           S, tid);
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (kt == kt_begin) load_a_fragments<T, kHeadDim>(rQ, sQ, warp * 16, lane);
    warp_qk<T, kHeadDim>(rS, rQ, sK + (kt & 1) * 64 * kHeadDim, lane);
    const bool diagonal = kt == rt;
#pragma unroll
    for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int key = kt * 64 + nt * 8 + 2 * c4 + (e & 1);
        const int query = row_a + (e >= 2 ? 8 : 0);
        const bool masked = (diagonal && !rules::causal(query, key)) || query >= S;
        rS[nt][e] = masked ? -INFINITY : rS[nt][e] * scale_log2;
      }
    }
    if (kPass == 0) {
      // Online log-sum-exp per row, without values.
      online_lse_update<8>(rS, row_max, row_sum);
    } else {
      // v = (x - lse) ln 2 per element; max per (query block, key block) cell.
#pragma unroll
      for (int nt = 0; nt < 8; ++nt) {
        rS[nt][0] -= row_lse[0];
        rS[nt][1] -= row_lse[0];
        rS[nt][2] -= row_lse[1];
        rS[nt][3] -= row_lse[1];
      }
      if (R % 16 == 0) {
        // The warp's 16 rows lie in one query block, and each 8-key column in one key block.
        const int m = (r0 + warp * 16) / R;
        float acc = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
          acc = fmaxf(acc, fmaxf(fmaxf(rS[nt][0], rS[nt][1]), fmaxf(rS[nt][2], rS[nt][3])));
          const int key_end = kt * 64 + nt * 8 + 8;
          if (key_end % R == 0 || nt == 7) {
#pragma unroll
            for (int off = 1; off < 32; off <<= 1) {
              acc = fmaxf(acc, __shfl_xor_sync(0xffffffffu, acc, off));
            }
            const int n = (key_end - 1) / R;
            if (lane == 0 && acc > -INFINITY && n <= m) {
              atomic_max_float(scores + static_cast<std::int64_t>(m) * (m + 1) / 2 + n,
                               acc * 0.69314718055994531f);
            }
            acc = -INFINITY;
          }
        }
      } else {
#pragma unroll
        for (int nt = 0; nt < 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            if (rS[nt][e] > -INFINITY) {
              const int key = kt * 64 + nt * 8 + 2 * c4 + (e & 1);
              const int m = (row_a + (e >= 2 ? 8 : 0)) / R;
              const int n = key / R;
              atomic_max_float(scores + static_cast<std::int64_t>(m) * (m + 1) / 2 + n,
                               rS[nt][e] * 0.69314718055994531f);
            }
          }
        }
      }
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  if (kPass == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(row_sum[r]);
      const int row = row_a + r * 8;
      if (c4 != 0 || row >= S) continue;
      if (gridDim.z == 1) {
        lse2[row] = sum > 0.0f ? row_max[r] + log2f(sum) : -INFINITY;
      } else {
        p.lse_partials[(static_cast<std::int64_t>(blockIdx.z) * gridDim.y + j) * S + row] =
            make_float2(row_max[r], sum);
      }
    }
  }
}

/// \brief lse_j[t] from the per-chunk partials of the lse pass: max over the chunks, then the
/// sum of each chunk's sum rescaled to it (row t has chunks 0 .. (t / 64) / key_chunk_tiles).
/// Grid (ceil(S / 256), g), 256 threads.
static __global__ void proxy_lse_merge_kernel(const __grid_constant__ EstimateParams p) {
  const int S = p.num_samples;
  const int j = blockIdx.y;
  const int row = blockIdx.x * blockDim.x + threadIdx.x;
  if (row >= S) return;
  const int chunks = (row / 64) / p.key_chunk_tiles + 1;
  const float2* part = p.lse_partials + static_cast<std::int64_t>(j) * S + row;
  const std::int64_t chunk_stride = static_cast<std::int64_t>(gridDim.y) * S;
  float mx = -INFINITY;
  for (int z = 0; z < chunks; ++z) mx = fmaxf(mx, part[z * chunk_stride].x);
  const float base = mx == -INFINITY ? 0.0f : mx;
  float sum = 0.0f;
  for (int z = 0; z < chunks; ++z) {
    const float2 v = part[z * chunk_stride];
    sum += v.y * exp2_approx(v.x - base);
  }
  p.proxy_lse[static_cast<std::int64_t>(j) * S + row] = sum > 0.0f ? mx + log2f(sum) : -INFINITY;
}

}  // namespace proxyattn::cuda::kernel
