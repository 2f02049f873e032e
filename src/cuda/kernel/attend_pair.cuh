// src/cuda/kernel/attend_pair.cuh: block-sparse attention with one CTA per PAIR of query heads
// (variant kGqaPair, dispatch.h). Heads h and h + 1 (h even) share a KV head and a proxy group,
// so for a query block m < nb - 1 they walk nested prefixes of one group order: the CTA walks
// max(count_h, count_h+1) blocks, loading each K/V tile once, and a warp computes a tile only
// when the block lies within its own head's count (a warp-uniform branch; every thread still
// takes part in the loads and barriers). For the last query block the heads have their own
// last-block orders: the CTA walks head h's list, then head h + 1's, each computed by its head's
// warps only. Dense sequences: both heads walk blocks 0..m.
//
// Valid when group_size and heads_per_group are both even (or every sequence is dense); the
// dispatcher checks that and otherwise launches attend_kernel. Per warp, the work is exactly
// attend_kernel's (WarpAttention), so results are bitwise those of the one-head kernel.
#pragma once

#include <cstdint>

#include "cuda/kernel/attend.cuh"

namespace proxyattn::cuda::kernel {

/// \brief Block-sparse attention, two query heads per CTA; warps [0, kWarpsPerHead) serve head
/// 2 * blockIdx.x, the others head 2 * blockIdx.x + 1. Grid (num_qo_heads / 2, sum of nb).
template <typename T, int kHeadDim, int kBlock>
__global__ void __launch_bounds__(AttendTraits<kHeadDim, kBlock, 0, 2>::kThreads)
    attend_pair_kernel(const __grid_constant__ AttendParams p) {
  using Traits = AttendTraits<kHeadDim, kBlock, 0, 2>;
  constexpr int kThreads = Traits::kThreads;
  constexpr int kKeys = Traits::kKeyTile;
  constexpr int kTilesPerBlock = kBlock / kKeys;
  constexpr int kRowsPerWarp = Traits::kRowsPerWarp;
  constexpr int kWarpsPerHead = Traits::kWarpsPerHead;

  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);  // [2][kBlock, kHeadDim] swizzled, per head; reused for O
  T* sK = sQ + 2 * kBlock * kHeadDim;      // [2][kKeys, kHeadDim]
  T* sV = sK + 2 * kKeys * kHeadDim;       // [2][kKeys, kHeadDim]

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int mine = warp / kWarpsPerHead;          // 0 or 1: which head of the pair this warp serves
  const int warp_in_head = warp % kWarpsPerHead;  // the warp's row slice of its head's block
  const int head0 = 2 * blockIdx.x;
  const int row = blockIdx.y;

  const SeqDesc& seq = p.seqs[find_seq(p, row)];
  const int nb = seq.num_blocks;
  const int m = nb - 1 - (row - seq.cta_start);
  const int len = seq.len;
  const int kv_head = head0 / p.group_size;  // also (head0 + 1) / group_size: group_size is even
  const int q_row0 = m * kBlock;

  // The blocks the CTA walks: positions [0, num_blocks) of a virtual list; position c reads
  // order0[c] (c < split_at) or order1[c - split_at]. This warp computes positions [lo, hi).
  const PlanRow plan0 = plan_row(p, seq, head0, m, tid);
  const PlanRow plan1 = plan_row(p, seq, head0 + 1, m, tid);
  const bool per_head = !seq.dense && m == nb - 1;  // the last block: one list per head
  const std::int16_t* order0 = plan0.order;
  const std::int16_t* order1 = per_head ? plan1.order : plan0.order;
  const int split_at = per_head ? plan0.count : nb;  // nb > any position: order0 throughout
  const int num_blocks =
      per_head ? plan0.count + plan1.count : max(plan0.count, plan1.count);
  const int lo = (per_head && mine == 1) ? plan0.count : 0;
  const int hi = mine == 0 ? plan0.count : (per_head ? num_blocks : plan1.count);
  const int num_tiles = num_blocks * kTilesPerBlock;
  // The key tile at step t (key_tile's rule over the virtual list).
  auto tile_at = [&](int t) {
    const int c = t / kTilesPerBlock;
    const int n = order0 == nullptr       ? c
                  : c < split_at          ? static_cast<int>(__ldg(order0 + c))
                                          : static_cast<int>(__ldg(order1 + (c - split_at)));
    KeyTile tile;
    tile.key_start = n * kBlock + (t % kTilesPerBlock) * kKeys;
    tile.kind = (n < 0 || n > m) ? KeyTile::kSkip : (n == m ? KeyTile::kDiagonal : KeyTile::kFull);
    return tile;
  };

  const T* gK = static_cast<const T*>(p.k) + seq.token_start * p.k_stride_n + kv_head * p.k_stride_h;
  const T* gV = static_cast<const T*>(p.v) + seq.token_start * p.v_stride_n + kv_head * p.v_stride_h;

  // Prologue: both Q tiles and the first key tile.
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const T* gQ = static_cast<const T*>(p.q) + seq.token_start * p.q_stride_n +
                  (head0 + j) * p.q_stride_h;
    load_tile<T, kBlock, kHeadDim, kThreads>(sQ + j * kBlock * kHeadDim, gQ, p.q_stride_n, q_row0,
                                             len, tid);
  }
  if (num_tiles > 0) {
    const KeyTile first = tile_at(0);
    if (first.kind != KeyTile::kSkip) {
      load_tile<T, kKeys, kHeadDim, kThreads>(sK, gK, p.k_stride_n, first.key_start, len, tid);
      load_tile<T, kKeys, kHeadDim, kThreads>(sV, gV, p.v_stride_n, first.key_start, len, tid);
    }
  }
  cp_async_commit();

  WarpAttention<T, kHeadDim, Traits::kMTiles, kKeys, Traits::kChunkedPV> state;
  state.init();
  const int q_pos0 = q_row0 + warp_in_head * kRowsPerWarp + lane / 4;  // the thread's first row
  const T* sQw = sQ + mine * kBlock * kHeadDim + warp_in_head * kRowsPerWarp * kHeadDim;
  const float scale_log2 = p.scale_log2;

  for (int t = 0; t < num_tiles; ++t) {
    const KeyTile tile = tile_at(t);
    // Prefetch the next tile into the other buffer (free since the barrier ending step t - 1).
    if (t + 1 < num_tiles) {
      const KeyTile next = tile_at(t + 1);
      if (next.kind != KeyTile::kSkip) {
        const int buf = (t + 1) & 1;
        load_tile<T, kKeys, kHeadDim, kThreads>(sK + buf * kKeys * kHeadDim, gK, p.k_stride_n,
                                                next.key_start, len, tid);
        load_tile<T, kKeys, kHeadDim, kThreads>(sV + buf * kKeys * kHeadDim, gV, p.v_stride_n,
                                                next.key_start, len, tid);
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
    const int c = t / kTilesPerBlock;
    if (c >= lo && c < hi) {  // warp-uniform: this warp's head selected the block
      state.step(sQw, sK + (t & 1) * kKeys * kHeadDim, sV + (t & 1) * kKeys * kHeadDim,
                 tile.kind == KeyTile::kDiagonal, tile.key_start, q_pos0, scale_log2, lane);
    }
    __syncthreads();
  }
  cp_async_wait<0>();
  __syncthreads();

  // Epilogue: each head's O goes through its own Q tile, then both tiles are stored by all threads.
  float* lse =
      p.lse != nullptr ? p.lse + (head0 + mine) * p.lse_stride_h + seq.token_start : nullptr;
  state.write_o(sQ + mine * kBlock * kHeadDim, warp_in_head * kRowsPerWarp, q_row0, len, lse, lane);
  __syncthreads();
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    T* gO = static_cast<T*>(p.o) + seq.token_start * p.o_stride_n + (head0 + j) * p.o_stride_h;
    store_tile<T, kBlock, kHeadDim, kThreads>(gO, p.o_stride_n, sQ + j * kBlock * kHeadDim, q_row0,
                                              len, tid);
  }
}

}  // namespace proxyattn::cuda::kernel
