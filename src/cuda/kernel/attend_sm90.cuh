// src/cuda/kernel/attend_sm90.cuh: block-sparse causal flash attention (stage 7, docs/SPEC.md) for
// sm_90a: TMA tile loads on mbarriers, wgmma for S = Q K^T and O += P V, warp specialization.
//
// A CTA of 384 threads in three warpgroups serves (query head, query block m of 128 rows) tiles:
// one per CTA, or (kPersistent) one CTA per SM takes tiles from a counter, longest rows first,
// with two Q buffers so that the next tile's Q loads during this one.
//   warpgroup 0  producer: one thread loads the tile's Q, then the K and V tiles (128 keys x D)
//                of the plan row's key blocks, in plan order, into rings of kStages stages
//                (full/empty mbarriers per stage, K and V apart so that a K stage frees as soon
//                as its S is computed); it keeps 24 registers (setmaxnreg).
//   warpgroups 1-2  consumers, 64 query rows each, 240 registers: per key block j they issue
//                S_j = Q K_j^T (SS wgmma, fp32 in registers) together with O += P_{j-1} V_{j-1}
//                (RS wgmma, P from registers), then run the online softmax of S_j while P V runs.
//                With kPingPong the two consumers take turns issuing their matrix products
//                (named barriers 1 and 2), so one's softmax overlaps the other's products.
// Masking, the plan walk and the numerics are those of the sm_80 kernel (attend.cuh): only the
// diagonal block is masked element-wise, each row's max and sum live in the log2 domain with the
// scale folded in, P is rounded to the input type for P V. Out-of-range plan entries raise flag 2
// and contribute nothing (their tile is block 0, fully masked). The epilogue stages O through the
// consumer's rows of the Q tile for 16-byte stores.
#pragma once

#include <cuda.h>  // CUtensorMap

#include <cmath>
#include <cstdint>

#include "cuda/kernel/attend.cuh"
#include "cuda/kernel/hopper.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda {

/// \brief Kernel parameters of the sm_90a attention: the plan walk plus the TMA descriptors of
/// Q, K and V, each a 3-D tensor (head_dim, heads, tokens) loaded in boxes of (64, 1, 128).
struct AttendSm90Params {
  AttendParams attend;
  std::int32_t num_tiles = 0;   ///< num_qo_heads x grid rows
  std::int32_t sched_slot = 0;  ///< persistent launches: the slot of the tile counter
  CUtensorMap q_map;
  CUtensorMap k_map;
  CUtensorMap v_map;
};

namespace kernel {

/// Dynamic tile scheduling state: per launch slot, a tile counter and a count of finished CTAs (the
/// last CTA resets both, so each launch starts from zero), and each CTA's current tile. The tile
/// index travels from the producer to the consumers through global memory, ordered by mbarriers
/// (not shared memory: compute-sanitizer's racecheck does not follow mbarrier ordering). Launches
/// take slots round-robin, so up to kSchedSlots persistent launches may run concurrently.
constexpr int kSchedSlots = 16;
constexpr int kSchedMaxCtas = 256;
static __device__ unsigned int g_sched_counters[kSchedSlots][2];
static __device__ int g_sched_tiles[kSchedSlots][kSchedMaxCtas];

/// \tparam kPersistent one CTA per SM taking tiles in order from an atomic counter (the
///   longest first), else one CTA per tile
template <typename T, int kHeadDim, int kStages, bool kPingPong, bool kPersistent>
__global__ void __launch_bounds__(384, 1)
    attend_sm90_kernel(const __grid_constant__ AttendSm90Params pp) {
#ifdef PROXYATTN_SM90A
  using Traits = AttendSm90Traits<kHeadDim, kStages, kPersistent ? 2 : 1>;
  constexpr int kQBuffers = Traits::kQBuffers;
  using namespace hopper;
  constexpr int kPanelBytes = Traits::kPanelBytes;
  constexpr int kTileBytes = Traits::kTileBytes;
  const AttendParams& p = pp.attend;

  extern __shared__ unsigned char smem_raw[];
  const std::uint32_t raw = smem_u32(smem_raw);
  const std::uint32_t base = (raw + 1023u) & ~1023u;  // 1024-byte aligned (128B swizzle atoms)
  unsigned char* smem = smem_raw + (base - raw);
  auto sQ = [&](int b) { return base + static_cast<std::uint32_t>(kTileBytes * b); };
  auto sK = [&](int s) { return base + static_cast<std::uint32_t>(kTileBytes * (kQBuffers + s)); };
  auto sV = [&](int s) {
    return base + static_cast<std::uint32_t>(kTileBytes * (kQBuffers + kStages + s));
  };
  const std::uint32_t bars = base + kTileBytes * (kQBuffers + 2 * kStages);
  // Barriers (8 bytes each): q_full(0), k_full, v_full, k_empty, v_empty [kStages], q_empty(0),
  // tile_full, tile_empty, q_full(1), q_empty(1).
  auto q_full = [&](int b) { return bars + 8u * (b == 0 ? 0 : 4 * kStages + 4); };
  auto k_full = [&](int s) { return bars + 8u * (1 + s); };
  auto v_full = [&](int s) { return bars + 8u * (1 + kStages + s); };
  auto k_empty = [&](int s) { return bars + 8u * (1 + 2 * kStages + s); };
  auto v_empty = [&](int s) { return bars + 8u * (1 + 3 * kStages + s); };
  auto q_empty = [&](int b) { return bars + 8u * (b == 0 ? 1 + 4 * kStages : 4 * kStages + 5); };
  const std::uint32_t tile_full = bars + 8u * (2 + 4 * kStages);
  const std::uint32_t tile_empty = bars + 8u * (3 + 4 * kStages);

  const int tid = threadIdx.x;
  const int warp = tid / 32;
  const int lane = tid % 32;
  const int wg = warp / 4;

  // Work items (tiles): t = grid row * num_qo_heads + head. Heads vary fastest, so the query heads
  // of one KV head run side by side and share K/V in L2; grid rows count each sequence's query
  // blocks down from the last, so the longest rows come first. One tile per CTA (grid (heads,
  // rows)), or with kPersistent one CTA per SM taking the tiles in that order from a counter.
  const int num_tiles = pp.num_tiles;
  int* const my_tile = kPersistent ? &g_sched_tiles[pp.sched_slot][blockIdx.x] : nullptr;
  struct Tile {
    const SeqDesc* seq;
    PlanRow plan;
    int head, m;
  };
  // Key block j of a tile's plan row, or -1 for an out-of-range entry (flag 2; its tile is
  // block 0 fully masked). Producer and consumers each read the plan, so no index travels
  // through shared memory.
  auto block_of = [&](const PlanRow& plan, int m, int j) {
    const int b = plan.order != nullptr ? static_cast<int>(__ldg(plan.order + j)) : j;
    return (b < 0 || b > m) ? -1 : b;
  };
  auto tile_at = [&](int t) {
    Tile w;
    w.head = t % p.num_qo_heads;
    const int row = t / p.num_qo_heads;
    w.seq = &p.seqs[find_seq(p, row)];
    w.m = w.seq->num_blocks - 1 - (row - w.seq->cta_start);
    w.plan = plan_row(p, *w.seq, w.head, w.m, tid);
    return w;
  };

  if (tid == 0) {
#pragma unroll
    for (int b = 0; b < kQBuffers; ++b) {
      mbar_init(q_full(b), 1);
      mbar_init(q_empty(b), Traits::kConsumers);
    }
    mbar_init(tile_full, 1);
    mbar_init(tile_empty, 128 * Traits::kConsumers);
#pragma unroll
    for (int s = 0; s < kStages; ++s) {
      mbar_init(k_full(s), 1);
      mbar_init(v_full(s), 1);
      mbar_init(k_empty(s), Traits::kConsumers);
      mbar_init(v_empty(s), Traits::kConsumers);
    }
    mbar_fence_init();
  }
  __syncthreads();

  if (wg == 0) {
    // ---- producer ----
    reg_dealloc<Traits::kProducerRegs>();
    if (tid != 0) return;
    prefetch_tensor_map(&pp.q_map);
    prefetch_tensor_map(&pp.k_map);
    prefetch_tensor_map(&pp.v_map);
    const std::uint64_t keep = l2_evict_last();
    // Ring positions run on across tiles: the g-th key block loaded goes to stage g % kStages, and
    // its use g / kStages waits for the consumers' release of the previous use (K: after its S is
    // computed; V: after its P V). Q tiles likewise wait for the consumers' epilogue (q_empty).
    auto use_parity = [](int g) { return static_cast<std::uint32_t>(g / kStages - 1) & 1u; };
    int ring = 0;
    int q_uses = 0;
    int published = 0;
    unsigned int* const counters = g_sched_counters[pp.sched_slot];
    auto fetch = [&]() { return static_cast<int>(atomicAdd(&counters[0], 1u)); };
    // Tells the consumers the next tile (num_tiles: none left) once they have read the last.
    auto publish = [&](int t) {
      if (published > 0) mbar_wait(tile_empty, static_cast<std::uint32_t>(published - 1) & 1u);
      __stcg(my_tile, t);
      mbar_arrive(tile_full);
      ++published;
    };
    int t = kPersistent ? fetch() : static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
    for (;;) {
      if constexpr (kPersistent) publish(t);
      if (t >= num_tiles) break;
      const Tile w = tile_at(t);
      const int n = w.plan.count;
      t = kPersistent ? fetch() : num_tiles;
      if (n == 0) continue;
      const int kv_head = w.head / p.group_size;
      const int token0 = static_cast<int>(w.seq->token_start);
      auto load_k = [&](int j) {
        const int g = ring + j;
        const int s = g % kStages;
        if (g >= kStages) mbar_wait(k_empty(s), use_parity(g));
        int key_block = block_of(w.plan, w.m, j);
        if (key_block < 0) {
          if (p.flags != nullptr) atomicOr(p.flags, 2);
          key_block = 0;
        }
        mbar_arrive_expect_tx(k_full(s), kTileBytes);
#pragma unroll
        for (int c = 0; c < Traits::kPanels; ++c) {
          tma_load_3d(sK(s) + c * kPanelBytes, &pp.k_map, k_full(s), c * 64, kv_head,
                      token0 + key_block * 128, keep);
        }
        return key_block;
      };
      // K runs one block ahead of V (K_0, then K_{j+1} before V_j), so the next S = Q K^T never
      // waits behind a V stage that P V still reads; K_0 goes before Q, which waits for the
      // previous tile's epilogue.
      int next_block = load_k(0);
      // Q use u goes to buffer u % kQBuffers once the consumers released its use u - kQBuffers.
      const int qb = q_uses % kQBuffers;
      if (q_uses >= kQBuffers) {
        mbar_wait(q_empty(qb), static_cast<std::uint32_t>(q_uses / kQBuffers - 1) & 1u);
      }
      ++q_uses;
      mbar_arrive_expect_tx(q_full(qb), kTileBytes);
#pragma unroll
      for (int c = 0; c < Traits::kPanels; ++c) {
        tma_load_3d(sQ(qb) + c * kPanelBytes, &pp.q_map, q_full(qb), c * 64, w.head,
                    token0 + w.m * 128, keep);
      }
      for (int j = 0; j < n; ++j) {
        const int key_block = next_block;
        if (j + 1 < n) next_block = load_k(j + 1);
        const int g = ring + j;
        const int s = g % kStages;
        if (g >= kStages) mbar_wait(v_empty(s), use_parity(g));
        mbar_arrive_expect_tx(v_full(s), kTileBytes);
#pragma unroll
        for (int c = 0; c < Traits::kPanels; ++c) {
          tma_load_3d(sV(s) + c * kPanelBytes, &pp.v_map, v_full(s), c * 64, kv_head,
                      token0 + key_block * 128, keep);
        }
      }
      ring += n;
    }
    if constexpr (kPersistent) {
      // Every fetch of this launch is done once all CTAs got here: the last one resets the slot.
      __threadfence();
      if (atomicAdd(&counters[1], 1u) == gridDim.x - 1) {
        atomicExch(&counters[0], 0u);
        atomicExch(&counters[1], 0u);
      }
    }
    return;
  }

  // ---- consumers ----
  reg_alloc<Traits::kConsumerRegs>();
  const int cons = wg - 1;          // 0 or 1: query rows [64 cons, 64 cons + 64) of the block
  const int ctid = tid - 128 * wg;  // thread within the consumer warpgroup
  const int wrow = 16 * (warp % 4) + lane / 4;  // the thread's first row within the 64
  const float scale_log2 = p.scale_log2;
  int ring = 0;    // key blocks consumed so far (the producer's ring position)
  int q_uses = 0;  // Q tiles consumed so far
  int received = 0;
  auto receive = [&]() {
    mbar_wait(tile_full, static_cast<std::uint32_t>(received) & 1u);
    ++received;
    const int t = __ldcg(my_tile);
    mbar_arrive(tile_empty);
    return t;
  };
  for (int t = kPersistent ? receive() : static_cast<int>(blockIdx.y * gridDim.x + blockIdx.x);
       t < num_tiles; t = kPersistent ? receive() : num_tiles) {
    const Tile w = tile_at(t);
    const int n = w.plan.count;
    const int m = w.m;
    const int qb = q_uses % kQBuffers;  // this tile's Q buffer (used only when n > 0)
    const int q_pos0 =
        m * 128 + 64 * cons + wrow;  // the thread's first query, local to the sequence

    float rO[kHeadDim / 2];
#pragma unroll
    for (int i = 0; i < kHeadDim / 2; ++i) rO[i] = 0.0f;
    float row_max[2] = {-INFINITY, -INFINITY};
    float row_sum[2] = {0.0f, 0.0f};

    if (n > 0) {
      float rS[64];
      std::uint32_t rP[8][4];
      const std::uint64_t q_desc = make_desc(sQ(qb) + 64 * cons * 128, 0, 1024);
      // S = Q K^T: head_dim / 16 k-steps; step kk reads panel kk / 4 at byte offset 32 (kk % 4).
      auto issue_qk = [&](int s) {
        const std::uint64_t k_desc = make_desc(sK(s), 0, 1024);
#pragma unroll
        for (int kk = 0; kk < kHeadDim / 16; ++kk) {
          const std::uint32_t off = ((kk / 4) * kPanelBytes + (kk % 4) * 32) >> 4;
          Wgmma<T, 128>::ss(rS, q_desc + off, k_desc + off, kk > 0 ? 1 : 0);
        }
      };
      // O += P V: 8 k-steps of 16 keys; V is MN-major (panels of 64 columns kPanelBytes apart).
      auto issue_pv = [&](int s) {
        const std::uint64_t v_desc = make_desc(sV(s), kPanelBytes, 1024);
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
          Wgmma<T, kHeadDim>::rs(rO, rP[kk], v_desc + ((kk * 2048) >> 4), 1);
        }
      };
      // Turn-taking of the two consumers (kPingPong): consumer c waits on barrier 1 + c before
      // issuing its products and then releases the other. Consumer 1 pre-arrives once for consumer
      // 0 and skips its last release, so both barriers see exactly n + 1 phases.
      auto turn_wait = [&]() {
        if constexpr (kPingPong) bar_sync(1 + cons, 256);
      };
      auto turn_pass = [&](bool last) {
        if constexpr (kPingPong) {
          if (cons == 0 || !last) bar_arrive(2 - cons, 256);
        }
      };
      // Online softmax of rS for key block key_block (-1: nothing); returns the rescale factor of
      // each row's state.
      auto softmax = [&](int key_block, float(&alpha)[2]) {
        if (key_block < 0 || key_block == m) {
          // rules::causal (key <= query) in 32-bit column offsets: column 8 jj + 2 (l % 4) + e % 2
          // of the tile is masked when it exceeds the row's limit; an out-of-range entry masks all.
          // (One branch for both cases and 32-bit compares: 64-bit ones spilled registers.)
          const int limit0 = key_block < 0 ? -1024 : q_pos0 - key_block * 128 - 2 * (lane % 4);
#pragma unroll
          for (int jj = 0; jj < 16; ++jj) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              if (8 * jj + (e & 1) > limit0 + (e >= 2 ? 8 : 0)) rS[4 * jj + e] = -INFINITY;
            }
          }
        }
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          float mx = -INFINITY;
#pragma unroll
          for (int jj = 0; jj < 16; ++jj) {
            mx = fmaxf(mx, fmaxf(rS[4 * jj + 2 * r], rS[4 * jj + 2 * r + 1]));
          }
          mx = fmaxf(row_max[r], quad_max(mx) * scale_log2);
          const float base = mx == -INFINITY ? 0.0f : mx;
          alpha[r] = exp2_approx(row_max[r] - base);
          row_max[r] = mx;
          float sum = 0.0f;
#pragma unroll
          for (int jj = 0; jj < 16; ++jj) {
            rS[4 * jj + 2 * r] = exp2_approx(fmaf(rS[4 * jj + 2 * r], scale_log2, -base));
            rS[4 * jj + 2 * r + 1] = exp2_approx(fmaf(rS[4 * jj + 2 * r + 1], scale_log2, -base));
            sum += rS[4 * jj + 2 * r] + rS[4 * jj + 2 * r + 1];
          }
          row_sum[r] = row_sum[r] * alpha[r] + sum;
        }
      };
      // P (input type) as the A fragments of the 8 key chunks: chunk kk is accumulator registers
      // 8 kk .. 8 kk + 7 (rows r and r + 8, key columns 16 kk + 2 (l % 4) and + 8).
      auto pack_p = [&]() {
#pragma unroll
        for (int kk = 0; kk < 8; ++kk) {
#pragma unroll
          for (int i = 0; i < 4; ++i) {
            rP[kk][i] = ElemTraits<T>::pack(rS[8 * kk + 2 * i], rS[8 * kk + 2 * i + 1]);
          }
        }
      };
      auto rescale_o = [&](const float(&alpha)[2]) {
#pragma unroll
        for (int i = 0; i < kHeadDim / 2; ++i) rO[i] *= alpha[(i / 2) % 2];
      };

      if (cons == 1) turn_pass(false);  // pre-arrive for consumer 0 (only when kPingPong)
      mbar_wait(q_full(qb), static_cast<std::uint32_t>(q_uses / kQBuffers) & 1u);

      // Prologue: S_0, its softmax, P_0.
      int s = ring % kStages;
      std::uint32_t phase = static_cast<std::uint32_t>(ring / kStages) & 1u;
      ring += n;
      int key_block = block_of(w.plan, m, 0);
      mbar_wait(k_full(s), phase);
      turn_wait();
      fence_regs(rS);
      wgmma_fence();
      issue_qk(s);
      wgmma_commit();
      turn_pass(false);
      wgmma_wait<0>();
      fence_regs(rS);
      if (ctid == 0) mbar_arrive(k_empty(s));
      {
        float alpha[2];
        softmax(key_block, alpha);
      }
      pack_p();

      for (int j = 1; j < n; ++j) {
        const int s_prev = s;
        const std::uint32_t phase_prev = phase;
        if (++s == kStages) {
          s = 0;
          phase ^= 1u;
        }
        key_block = block_of(w.plan, m, j);
        mbar_wait(k_full(s), phase);
        mbar_wait(v_full(s_prev), phase_prev);
        turn_wait();
        fence_regs(rS);
        fence_regs(rO);
        wgmma_fence();
        issue_qk(s);
        wgmma_commit();
        issue_pv(s_prev);
        wgmma_commit();
        turn_pass(false);
        wgmma_wait<1>();  // S_j ready; P_{j-1} V_{j-1} may still run
        fence_regs(rS);
        if (ctid == 0) mbar_arrive(k_empty(s));
        float alpha[2];
        softmax(key_block, alpha);
        wgmma_wait<0>();
        fence_regs(rO);
        if (ctid == 0) mbar_arrive(v_empty(s_prev));
        rescale_o(alpha);
        pack_p();
      }
      // Epilogue: the last P V.
      mbar_wait(v_full(s), phase);
      turn_wait();
      fence_regs(rO);
      wgmma_fence();
      issue_pv(s);
      wgmma_commit();
      turn_pass(true);
      wgmma_wait<0>();
      fence_regs(rO);
      if (ctid == 0) mbar_arrive(v_empty(s));
    }

    // Epilogue: LSE = (max + log2 sum) ln 2; O /= sum through the consumer's rows of the Q tile
    // (same 128B swizzle) for 16-byte stores, then the Q tile is released (q_empty). A row that
    // attended nothing gets O = 0 and LSE = -inf (an empty plan row never touches the Q tile).
    const SeqDesc& seq = *w.seq;
    const int len = seq.len;
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float sum = quad_sum(row_sum[r]);
      inv[r] = sum > 0.0f ? 1.0f / sum : 0.0f;
      const int query = q_pos0 + 8 * r;
      if (p.lse != nullptr && lane % 4 == 0 && query < len) {
        p.lse[w.head * p.lse_stride_h + seq.token_start + query] =
            sum > 0.0f ? (row_max[r] + log2f(sum)) * 0.69314718055994531f : -INFINITY;
      }
    }
    constexpr int kChunks = kHeadDim / 8;  // 16-byte chunks per row
    T* gO = static_cast<T*>(p.o) + seq.token_start * p.o_stride_n + w.head * p.o_stride_h;
    if (n > 0) {
#pragma unroll
      for (int jj = 0; jj < kHeadDim / 8; ++jj) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
          const int tile_row = 64 * cons + wrow + 8 * r;
          const int offset = qb * kTileBytes + (jj / 8) * kPanelBytes + tile_row * 128 +
                             (((jj % 8) ^ (tile_row % 8)) << 4) + 4 * (lane % 4);
          *reinterpret_cast<std::uint32_t*>(smem + offset) =
              ElemTraits<T>::pack(rO[4 * jj + 2 * r] * inv[r], rO[4 * jj + 2 * r + 1] * inv[r]);
        }
      }
      bar_sync(3 + cons, 128);
    }
#pragma unroll
    for (int i = 0; i < 64 * kChunks / 128; ++i) {
      const int idx = ctid + 128 * i;
      const int tile_row = 64 * cons + idx / kChunks;
      const int chunk = idx % kChunks;
      const int query = m * 128 + tile_row;
      if (query < len) {
        const int offset = qb * kTileBytes + (chunk / 8) * kPanelBytes + tile_row * 128 +
                           (((chunk % 8) ^ (tile_row % 8)) << 4);
        *reinterpret_cast<uint4*>(gO + query * p.o_stride_n + chunk * 8) =
            n > 0 ? *reinterpret_cast<const uint4*>(smem + offset) : make_uint4(0, 0, 0, 0);
      }
    }
    if (n > 0) {
      bar_sync(3 + cons, 128);  // every thread of the consumer has read its O rows
      if (ctid == 0) mbar_arrive(q_empty(qb));
      ++q_uses;
    }
  }  // tiles
#else
  __trap();  // built without sm_90a: dispatch never launches this kernel then
#endif
}

}  // namespace kernel
}  // namespace proxyattn::cuda
