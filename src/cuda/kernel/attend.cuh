// src/cuda/kernel/attend.cuh: block-sparse causal flash attention (SPEC.md stage 7), FA2 class.
//
// One CTA per (query head, query block m). The CTA walks the plan: the first counts[h][m] key
// blocks of row_order(h, m) (last_order for the last block, the group's order otherwise), or
// every block 0..m in dense mode. Each key block is kBlock / 64 tiles of 64 keys, double-buffered
// with cp.async. Only the diagonal block is masked element-wise (causal); its tiles also cover
// the padded tail of the last block, since keys >= N only occur there. Each warp owns 16 query
// rows; the online softmax runs in the log2 domain with the scale folded in.
#pragma once

#include <cmath>
#include <cstdint>

#include "cuda/kernel/mma.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda::kernel {

/// \brief The key tile a CTA processes at step t, or kind kSkip when the plan entry is invalid.
struct KeyTile {
  enum Kind : int { kFull = 0, kDiagonal = 1, kSkip = 2 };
  int key_start;  ///< first key of the tile, local to the sequence
  int kind;
};

template <int kBlock>
__device__ __forceinline__ KeyTile key_tile(int t, int m, const std::int16_t* order) {
  constexpr int kTilesPerBlock = kBlock / kKeyTile;
  const int c = t / kTilesPerBlock;
  const int n = order != nullptr ? static_cast<int>(__ldg(order + c)) : c;
  KeyTile tile;
  tile.key_start = n * kBlock + (t % kTilesPerBlock) * kKeyTile;
  tile.kind = (n < 0 || n > m) ? KeyTile::kSkip : (n == m ? KeyTile::kDiagonal : KeyTile::kFull);
  return tile;
}

/// \brief Block-sparse attention. Grid (num_qo_heads, sum of nb over the launch's sequences).
template <typename T, int kHeadDim, int kBlock>
__global__ void __launch_bounds__(AttendTraits<kHeadDim, kBlock>::kThreads)
    attend_kernel(const __grid_constant__ AttendParams p) {
  using Traits = AttendTraits<kHeadDim, kBlock>;
  constexpr int kThreads = Traits::kThreads;
  constexpr int kTilesPerBlock = kBlock / kKeyTile;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBlock, kHeadDim] swizzled; reused for O
  T* sK = sQ + kBlock * kHeadDim;          // [2][64, kHeadDim]
  T* sV = sK + 2 * kKeyTile * kHeadDim;    // [2][64, kHeadDim]

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int head = blockIdx.x;
  const int row = blockIdx.y;

  // Which sequence and query block; heaviest blocks (largest m) are scheduled first.
  int s = 0;
  while (s + 1 < p.num_seqs && row >= p.seqs[s + 1].cta_start) ++s;
  const SeqDesc& seq = p.seqs[s];
  const int nb = seq.num_blocks;
  const int m = nb - 1 - (row - seq.cta_start);
  const int len = seq.len;
  const int kv_head = head / p.group_size;
  const int q_row0 = m * kBlock;  // first query of the block, local to the sequence

  // The plan row this CTA walks.
  const std::int16_t* order = nullptr;
  int count = m + 1;
  if (!seq.dense) {
    const std::int64_t head_row = seq.head_offset + static_cast<std::int64_t>(head) * nb;
    if (m == nb - 1) {
      order = p.last_order + head_row;
    } else {
      const int group = head / p.heads_per_group;
      const std::int64_t tri = static_cast<std::int64_t>(nb) * (nb + 1) / 2;
      order = p.group_order + seq.order_offset + group * tri + static_cast<std::int64_t>(m) * (m + 1) / 2;
    }
    count = p.counts[head_row + m];
    if (count < 0 || count > m + 1) {
      if (p.flags != nullptr && tid == 0) atomicOr(p.flags, 1);
      count = count < 0 ? 0 : m + 1;
    }
  }
  const int num_tiles = count * kTilesPerBlock;

  const T* gQ = static_cast<const T*>(p.q) + seq.token_start * p.q_stride_n + head * p.q_stride_h;
  const T* gK = static_cast<const T*>(p.k) + seq.token_start * p.k_stride_n + kv_head * p.k_stride_h;
  const T* gV = static_cast<const T*>(p.v) + seq.token_start * p.v_stride_n + kv_head * p.v_stride_h;

  // Prologue: Q and the first key tile.
  load_tile<T, kBlock, kHeadDim, kThreads>(sQ, gQ, p.q_stride_n, q_row0, len, tid);
  if (num_tiles > 0) {
    const KeyTile first = key_tile<kBlock>(0, m, order);
    if (first.kind != KeyTile::kSkip) {
      load_tile<T, kKeyTile, kHeadDim, kThreads>(sK, gK, p.k_stride_n, first.key_start, len, tid);
      load_tile<T, kKeyTile, kHeadDim, kThreads>(sV, gV, p.v_stride_n, first.key_start, len, tid);
    }
  }
  cp_async_commit();

  std::uint32_t rQ[kHeadDim / 16][4];       // A fragments of the warp's 16 query rows
  float rO[kHeadDim / 8][4] = {};           // output accumulators, 16 x kHeadDim per warp
  float rS[kKeyTile / 8][4];                // scores of one key tile, 16 x 64 per warp
  float row_max[2] = {-INFINITY, -INFINITY};  // running max (log2 units) of rows g and g + 8
  float row_sum[2] = {0.0f, 0.0f};            // this thread's share of the running denominator
  const int g = lane / 4;
  const int c4 = lane % 4;
  const int q_pos0 = q_row0 + warp * 16 + g;  // position of the thread's first row

  for (int t = 0; t < num_tiles; ++t) {
    const KeyTile tile = key_tile<kBlock>(t, m, order);
    // Prefetch the next tile into the other buffer (free since the barrier ending step t - 1).
    if (t + 1 < num_tiles) {
      const KeyTile next = key_tile<kBlock>(t + 1, m, order);
      if (next.kind != KeyTile::kSkip) {
        const int buf = (t + 1) & 1;
        load_tile<T, kKeyTile, kHeadDim, kThreads>(sK + buf * kKeyTile * kHeadDim, gK,
                                                   p.k_stride_n, next.key_start, len, tid);
        load_tile<T, kKeyTile, kHeadDim, kThreads>(sV + buf * kKeyTile * kHeadDim, gV,
                                                   p.v_stride_n, next.key_start, len, tid);
      }
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (t == 0) load_a_fragments<T, kHeadDim>(rQ, sQ, warp * 16, lane);
    if (tile.kind == KeyTile::kSkip) {
      if (p.flags != nullptr && tid == 0) atomicOr(p.flags, 2);
      __syncthreads();
      continue;
    }
    const T* sKt = sK + (t & 1) * kKeyTile * kHeadDim;
    const T* sVt = sV + (t & 1) * kKeyTile * kHeadDim;

    // S = Q K^T, scaled into log2 units; causal mask on the diagonal block only.
    warp_qk<T, kHeadDim>(rS, rQ, sKt, lane);
#pragma unroll
    for (int nt = 0; nt < kKeyTile / 8; ++nt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        rS[nt][e] *= p.scale_log2;
        if (tile.kind == KeyTile::kDiagonal) {
          const int key = tile.key_start + nt * 8 + 2 * c4 + (e & 1);
          const int query = q_pos0 + (e >= 2 ? 8 : 0);
          if (key > query) rS[nt][e] = -INFINITY;
        }
      }
    }
    // Online softmax, per row r (g and g + 8):
    //   new_max = max(old_max, max_u s[u]); alpha = 2^(old_max - new_max)
    //   sum = sum * alpha + sum_u 2^(s[u] - new_max);  O = O * alpha + P V
    // A row with no key yet keeps max = -inf; its base is 0 so that 2^(-inf) = 0, never NaN.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = row_max[r];
#pragma unroll
      for (int nt = 0; nt < kKeyTile / 8; ++nt) {
        mx = fmaxf(mx, fmaxf(rS[nt][2 * r], rS[nt][2 * r + 1]));
      }
      mx = quad_max(mx);
      const float base = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2_approx(row_max[r] - base);
      row_max[r] = mx;
      float sum = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kKeyTile / 8; ++nt) {
        rS[nt][2 * r] = exp2_approx(rS[nt][2 * r] - base);
        rS[nt][2 * r + 1] = exp2_approx(rS[nt][2 * r + 1] - base);
        sum += rS[nt][2 * r] + rS[nt][2 * r + 1];
      }
      row_sum[r] = row_sum[r] * alpha + sum;
#pragma unroll
      for (int dt = 0; dt < kHeadDim / 8; ++dt) {
        rO[dt][2 * r] *= alpha;
        rO[dt][2 * r + 1] *= alpha;
      }
    }
    warp_pv<T, kHeadDim>(rO, rS, sVt, lane);
    __syncthreads();
  }
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue: O /= sum, LSE = ln(sum) + max ln 2; a row that attended nothing gets O = 0 and
  // LSE = -inf. O goes through shared memory for 16-byte stores.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float sum = quad_sum(row_sum[r]);
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    const int local_row = warp * 16 + g + r * 8;
#pragma unroll
    for (int dt = 0; dt < kHeadDim / 8; ++dt) {
      const std::uint32_t packed =
          ElemTraits<T>::pack(rO[dt][2 * r] * inv, rO[dt][2 * r + 1] * inv);
      *reinterpret_cast<std::uint32_t*>(sQ + swizzle<kHeadDim>(local_row, dt * 8 + 2 * c4)) = packed;
    }
    const int query = q_row0 + local_row;
    if (p.lse != nullptr && c4 == 0 && query < len) {
      const float lse = sum > 0.0f ? (row_max[r] + log2f(sum)) * 0.69314718055994531f : -INFINITY;
      p.lse[head * p.lse_stride_h + seq.token_start + query] = lse;
    }
  }
  __syncthreads();
  T* gO = static_cast<T*>(p.o) + seq.token_start * p.o_stride_n + head * p.o_stride_h;
  constexpr int kChunks = kHeadDim / 8;
#pragma unroll
  for (int i = 0; i < kBlock * kChunks / kThreads; ++i) {
    const int idx = tid + i * kThreads;
    const int r = idx / kChunks;
    const int col = (idx % kChunks) * 8;
    if (q_row0 + r < len) {
      *reinterpret_cast<uint4*>(gO + (q_row0 + r) * p.o_stride_n + col) =
          *reinterpret_cast<const uint4*>(sQ + swizzle<kHeadDim>(r, col));
    }
  }
}

}  // namespace proxyattn::cuda::kernel
