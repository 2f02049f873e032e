// src/cuda/kernel/attend.cuh: block-sparse causal flash attention (docs/SPEC.md stage 7),
// FA2 class.
//
// One CTA per (query head, query block m). The CTA walks the plan: the first counts[h][m] key
// blocks of row_order(h, m) (last_order for the last block, the group's order otherwise), or
// every block 0..m in dense mode. Each key block is kBlock / kKeys tiles of kKeys keys
// (tile_config.h), double-buffered with cp.async. Only the diagonal block is masked element-wise
// (rules::causal); its tiles also cover the padded tail of the last block, since keys >= N occur
// only there. Each warp owns 16 or 32 query rows (tile_config.h); the online softmax runs in the
// log2 domain with the scale folded in.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/rules.h"
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

template <int kBlock, int kKeys>
__device__ __forceinline__ KeyTile key_tile(int t, int m, const std::int16_t* order) {
  constexpr int kTilesPerBlock = kBlock / kKeys;
  const int c = t / kTilesPerBlock;
  const int n = order != nullptr ? static_cast<int>(__ldg(order + c)) : c;
  KeyTile tile;
  tile.key_start = n * kBlock + (t % kTilesPerBlock) * kKeys;
  tile.kind = (n < 0 || n > m) ? KeyTile::kSkip : (n == m ? KeyTile::kDiagonal : KeyTile::kFull);
  return tile;
}

/// \brief The plan row one head walks for query block m: its order (nullptr: blocks 0..m in
/// order, dense mode) and its count, clamped to [0, m + 1] with flags bit 0 set when out of range.
struct PlanRow {
  const std::int16_t* order;
  int count;
};

__device__ __forceinline__ PlanRow plan_row(const AttendParams& p, const SeqDesc& seq, int head,
                                            int m, int tid) {
  PlanRow row{nullptr, m + 1};
  if (seq.dense) return row;
  const int nb = seq.num_blocks;
  const std::int64_t head_row = seq.head_offset + static_cast<std::int64_t>(head) * nb;
  if (m == nb - 1) {
    row.order = p.last_order + head_row;
  } else {
    const int group = head / p.heads_per_group;
    const std::int64_t tri = static_cast<std::int64_t>(nb) * (nb + 1) / 2;
    row.order = p.group_order + seq.order_offset + group * tri +
                static_cast<std::int64_t>(m) * (m + 1) / 2;
  }
  int count = p.counts[head_row + m];
  if (count < 0 || count > m + 1) {
    if (p.flags != nullptr && tid == 0) atomicOr(p.flags, 1);
    count = count < 0 ? 0 : m + 1;
  }
  row.count = count;
  return row;
}

/// \brief The sequence of grid row `row` (scan over cta_start). Within a sequence, grid rows
/// count query blocks down from the last, so the heaviest blocks (largest m) are scheduled first.
__device__ __forceinline__ int find_seq(const AttendParams& p, int row) {
  int s = 0;
  while (s + 1 < p.num_seqs && row >= p.seqs[s + 1].cta_start) ++s;
  return s;
}

/// \brief One warp's share of flash attention: kMTiles x 16 query rows against key tiles of kKeys,
/// with the online-softmax state and the O accumulators in registers.
/// \tparam kChunkedPV pack P and multiply it by V one 16-key chunk at a time, so that the packed P
///   of the whole tile is never live next to the fp32 P and O (64-key tiles at 32 rows x 128)
template <typename T, int kHeadDim, int kMTiles, int kKeys, bool kChunkedPV>
struct WarpAttention {
  float rO[kMTiles][kHeadDim / 8][4];  // output accumulators, kMTiles * 16 x kHeadDim
  // Per row i = 2 * mt + r (rows g + 16 mt and g + 8 + 16 mt of the warp): running max in log2
  // units (scale folded in) and this thread's share of the running denominator.
  float row_max[2 * kMTiles];
  float row_sum[2 * kMTiles];

  __device__ __forceinline__ void init() {
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int dt = 0; dt < kHeadDim / 8; ++dt) {
        rO[mt][dt][0] = rO[mt][dt][1] = rO[mt][dt][2] = rO[mt][dt][3] = 0.0f;
      }
    }
#pragma unroll
    for (int i = 0; i < 2 * kMTiles; ++i) {
      row_max[i] = -INFINITY;
      row_sum[i] = 0.0f;
    }
  }

  /// \brief One key tile: S = Q K^T, causal mask when diagonal, online softmax, O += P V.
  /// \param sQw [kMTiles * 16, kHeadDim] the warp's rows of the swizzled Q tile
  /// \param sKt [kKeys, kHeadDim] and sVt [kKeys, kHeadDim]: the key tile
  /// \param q_pos0 position (local to the sequence) of the thread's first row, key_start the tile's
  __device__ __forceinline__ void step(const T* sQw, const T* sKt, const T* sVt, bool diagonal,
                                       int key_start, int q_pos0, float scale_log2, int lane) {
    const int c4 = lane % 4;
    float rS[kMTiles][kKeys / 8][4];  // raw scores of the tile
    // S = Q K^T (raw); causal mask on the diagonal block only.
    warp_qk_multi<T, kHeadDim, kMTiles, kKeys>(rS, sQw, sKt, lane);
    if (diagonal) {
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt) {
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int key = key_start + nt * 8 + 2 * c4 + (e & 1);
            const int query = q_pos0 + mt * 16 + (e >= 2 ? 8 : 0);
            if (!rules::causal(query, key)) rS[mt][nt][e] = -INFINITY;
          }
        }
      }
    }
    // Online softmax, per row (scale folded into one FFMA per element):
    //   new_max = max(old_max, scale * max_u s[u]); alpha = 2^(old_max - new_max)
    //   sum = sum * alpha + sum_u 2^(scale * s[u] - new_max);  O = O * alpha + P V
    // A row with no key yet keeps max = -inf; its base is 0 so that 2^(-inf) = 0, never NaN.
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt) {
          mx = fmaxf(mx, fmaxf(rS[mt][nt][2 * r], rS[mt][nt][2 * r + 1]));
        }
        mx = fmaxf(row_max[2 * mt + r], quad_max(mx) * scale_log2);
        const float base = mx == -INFINITY ? 0.0f : mx;
        const float alpha = exp2_approx(row_max[2 * mt + r] - base);
        row_max[2 * mt + r] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kKeys / 8; ++nt) {
          rS[mt][nt][2 * r] = exp2_approx(fmaf(rS[mt][nt][2 * r], scale_log2, -base));
          rS[mt][nt][2 * r + 1] = exp2_approx(fmaf(rS[mt][nt][2 * r + 1], scale_log2, -base));
          sum += rS[mt][nt][2 * r] + rS[mt][nt][2 * r + 1];
        }
        row_sum[2 * mt + r] = row_sum[2 * mt + r] * alpha + sum;
        // O *= alpha, skipped while no row of the warp raised its max (alpha is exactly 1):
        // most tiles of long rows (the rescale is kHeadDim multiplies per row and tile).
        if (__any_sync(0xffffffffu, alpha != 1.0f)) {
#pragma unroll
          for (int dt = 0; dt < kHeadDim / 8; ++dt) {
            rO[mt][dt][2 * r] *= alpha;
            rO[mt][dt][2 * r + 1] *= alpha;
          }
        }
      }
    }
    if constexpr (kChunkedPV) {
      // Per 16-key chunk kk: P packed to T as A fragments, O += P V; the chunk's fp32
      // probabilities die before the next chunk is packed.
#pragma unroll
      for (int kk = 0; kk < kKeys / 16; ++kk) {
        std::uint32_t rP[kMTiles][4];
#pragma unroll
        for (int mt = 0; mt < kMTiles; ++mt) {
          rP[mt][0] = ElemTraits<T>::pack(rS[mt][2 * kk][0], rS[mt][2 * kk][1]);
          rP[mt][1] = ElemTraits<T>::pack(rS[mt][2 * kk][2], rS[mt][2 * kk][3]);
          rP[mt][2] = ElemTraits<T>::pack(rS[mt][2 * kk + 1][0], rS[mt][2 * kk + 1][1]);
          rP[mt][3] = ElemTraits<T>::pack(rS[mt][2 * kk + 1][2], rS[mt][2 * kk + 1][3]);
        }
        warp_pv_chunk<T, kHeadDim, kMTiles>(rO, rP, sVt, kk, lane);
      }
    } else {
      std::uint32_t rP[kMTiles][kKeys / 16][4];  // P rounded to T, as A fragments
      pack_p<T, kMTiles, kKeys>(rP, rS);
      warp_pv_multi<T, kHeadDim, kMTiles, kKeys>(rO, rP, sVt, lane);
    }
  }

  /// \brief Epilogue: O /= sum into the swizzled tile sO (rows warp_row0 ..), LSE = (max + log2
  /// sum) ln 2 into lse[query] for queries < len; a row that attended nothing gets O = 0 and
  /// LSE = -inf.
  /// \param sO [*, kHeadDim] swizzled tile (the Q tile, reused)   \param lse nullptr or the head's
  ///   row of LSE at the sequence's first token
  __device__ __forceinline__ void write_o(T* sO, int warp_row0, int q_row0, int len, float* lse,
                                          int lane) const {
    const int g = lane / 4;
    const int c4 = lane % 4;
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const float sum = quad_sum(row_sum[2 * mt + r]);
        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
        const int local_row = warp_row0 + mt * 16 + g + r * 8;
#pragma unroll
        for (int dt = 0; dt < kHeadDim / 8; ++dt) {
          const std::uint32_t packed =
              ElemTraits<T>::pack(rO[mt][dt][2 * r] * inv, rO[mt][dt][2 * r + 1] * inv);
          *reinterpret_cast<std::uint32_t*>(sO + swizzle<kHeadDim>(local_row, dt * 8 + 2 * c4)) =
              packed;
        }
        const int query = q_row0 + local_row;
        if (lse != nullptr && c4 == 0 && query < len) {
          lse[query] =
              sum > 0.0f ? (row_max[2 * mt + r] + log2f(sum)) * 0.69314718055994531f : -INFINITY;
        }
      }
    }
  }
};

/// \brief Copies rows [first_row, first_row + kRows) of the swizzled tile sO to a strided global
/// matrix with 16-byte stores, rows >= end_row excepted.
/// \param gO row 0 of the matrix; row r starts at gO + r * row_stride (elements)
template <typename T, int kRows, int kHeadDim, int kThreads>
__device__ __forceinline__ void store_tile(T* gO, std::int64_t row_stride, const T* sO,
                                           int first_row, int end_row, int tid) {
  constexpr int kChunks = kHeadDim / 8;
  static_assert((kRows * kChunks) % kThreads == 0, "tile must split evenly over threads");
#pragma unroll
  for (int i = 0; i < kRows * kChunks / kThreads; ++i) {
    const int idx = tid + i * kThreads;
    const int r = idx / kChunks;
    const int col = (idx % kChunks) * 8;
    if (first_row + r < end_row) {
      *reinterpret_cast<uint4*>(gO + (first_row + r) * row_stride + col) =
          *reinterpret_cast<const uint4*>(sO + swizzle<kHeadDim>(r, col));
    }
  }
}

/// \brief Block-sparse attention, one query head per CTA. Grid (num_qo_heads, sum of nb over the
/// launch's sequences).
template <typename T, int kHeadDim, int kBlock>
__global__ void __launch_bounds__(AttendTraits<kHeadDim, kBlock>::kThreads)
    attend_kernel(const __grid_constant__ AttendParams p) {
  using Traits = AttendTraits<kHeadDim, kBlock>;
  constexpr int kThreads = Traits::kThreads;
  constexpr int kKeys = Traits::kKeyTile;
  constexpr int kTilesPerBlock = kBlock / kKeys;
  constexpr int kRowsPerWarp = Traits::kRowsPerWarp;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [kBlock, kHeadDim] swizzled; reused for O
  T* sK = sQ + kBlock * kHeadDim;          // [2][kKeys, kHeadDim]
  T* sV = sK + 2 * kKeys * kHeadDim;       // [2][kKeys, kHeadDim]

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int head = blockIdx.x;
  const int row = blockIdx.y;

  const SeqDesc& seq = p.seqs[find_seq(p, row)];
  const int nb = seq.num_blocks;
  const int m = nb - 1 - (row - seq.cta_start);
  const int len = seq.len;
  const int kv_head = head / p.group_size;
  const int q_row0 = m * kBlock;  // first query of the block, local to the sequence

  // The plan row this CTA walks.
  const PlanRow plan = plan_row(p, seq, head, m, tid);
  const std::int16_t* order = plan.order;
  const int num_tiles = plan.count * kTilesPerBlock;

  const T* gQ = static_cast<const T*>(p.q) + seq.token_start * p.q_stride_n + head * p.q_stride_h;
  const T* gK = static_cast<const T*>(p.k) + seq.token_start * p.k_stride_n + kv_head * p.k_stride_h;
  const T* gV = static_cast<const T*>(p.v) + seq.token_start * p.v_stride_n + kv_head * p.v_stride_h;

  // Prologue: Q and the first key tile.
  load_tile<T, kBlock, kHeadDim, kThreads>(sQ, gQ, p.q_stride_n, q_row0, len, tid);
  if (num_tiles > 0) {
    const KeyTile first = key_tile<kBlock, kKeys>(0, m, order);
    if (first.kind != KeyTile::kSkip) {
      load_tile<T, kKeys, kHeadDim, kThreads>(sK, gK, p.k_stride_n, first.key_start, len, tid);
      load_tile<T, kKeys, kHeadDim, kThreads>(sV, gV, p.v_stride_n, first.key_start, len, tid);
    }
  }
  cp_async_commit();

  WarpAttention<T, kHeadDim, Traits::kMTiles, kKeys, Traits::kChunkedPV> state;
  state.init();
  const int q_pos0 = q_row0 + warp * kRowsPerWarp + lane / 4;  // the thread's first row
  const T* sQw = sQ + warp * kRowsPerWarp * kHeadDim;           // the warp's rows of Q
  const float scale_log2 = p.scale_log2;

  for (int t = 0; t < num_tiles; ++t) {
    const KeyTile tile = key_tile<kBlock, kKeys>(t, m, order);
    // Prefetch the next tile into the other buffer (free since the barrier ending step t - 1).
    if (t + 1 < num_tiles) {
      const KeyTile next = key_tile<kBlock, kKeys>(t + 1, m, order);
      if (next.kind != KeyTile::kSkip) {
        const int buf = (t + 1) & 1;
        load_tile<T, kKeys, kHeadDim, kThreads>(sK + buf * kKeys * kHeadDim, gK,
                                                   p.k_stride_n, next.key_start, len, tid);
        load_tile<T, kKeys, kHeadDim, kThreads>(sV + buf * kKeys * kHeadDim, gV,
                                                   p.v_stride_n, next.key_start, len, tid);
      }
    }
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (tile.kind == KeyTile::kSkip) {
      if (p.flags != nullptr && tid == 0) atomicOr(p.flags, 2);
      __syncthreads();
      continue;
    }
    state.step(sQw, sK + (t & 1) * kKeys * kHeadDim, sV + (t & 1) * kKeys * kHeadDim,
               tile.kind == KeyTile::kDiagonal, tile.key_start, q_pos0, scale_log2, lane);
    __syncthreads();
  }
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue: O goes through shared memory (the Q tile) for 16-byte stores.
  float* lse = p.lse != nullptr ? p.lse + head * p.lse_stride_h + seq.token_start : nullptr;
  state.write_o(sQ, warp * kRowsPerWarp, q_row0, len, lse, lane);
  __syncthreads();
  T* gO = static_cast<T*>(p.o) + seq.token_start * p.o_stride_n + head * p.o_stride_h;
  store_tile<T, kBlock, kHeadDim, kThreads>(gO, p.o_stride_n, sQ, q_row0, len, tid);
}

}  // namespace proxyattn::cuda::kernel
