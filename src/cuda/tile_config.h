// src/cuda/tile_config.h: every derived constant of the CUDA kernels, one Traits struct each.
// Tile choices affect speed only, never results (each warp owns 16 query rows whatever the tile).
#pragma once

#include <cstddef>

namespace proxyattn::cuda {

/// \brief Attention kernel (stage 7). One CTA per (head, query block of kBlock rows), 4 warps,
/// 64-key tiles everywhere.
///
/// | head_dim | block | keys | rows/warp | warps | smem (Qs + 2x K + 2x V) | ptxas sm_90a |
/// |----------|-------|------|-----------|-------|-------------------------|--------------|
/// | 64       | 64    | 64   | 16        | 4     | 40 KiB  | 130 regs |
/// | 64       | 128   | 64   | 32        | 4     | 48 KiB  | 226 regs |
/// | 128      | 64    | 64   | 16        | 4     | 80 KiB  | 168 regs |
/// | 128      | 128   | 64   | 32        | 4     | 96 KiB  | 255 regs, 24 B spill st / 32 B ld |
/// 32 rows per warp: each K/V fragment read from shared memory feeds two mma. With 16 rows per
/// warp (8 warps per 128-row CTA) the H200 ran dense hd128 at 0.88x SDPA-flash (491 vs 432 ms at
/// 128K), which the shared-memory traffic count (64 KiB per MFLOP per warp) explains.
/// A plan block is kBlock / kKeyTile tiles. 64-key tiles at hd128 x b128 (FA2's 128 x 64 tile,
/// half the per-FLOP softmax/rescale work of 32-key tiles) because they measured 4-8% faster than
/// 32-key tiles on an H200 at every size, spill included (dense 128K: 404.5 vs 428.3 ms; see
/// bench/gpu/NOTES.md). There S (64 registers) + O (128) leave no room for all of P, so P is
/// packed and multiplied by V one 16-key chunk at a time (kChunkedPV); smem is
/// (128 + 4 * 64) * 128 * 2 = 96 KiB, 2 CTAs per SM.
template <int kHeadDim_, int kBlock_>
struct AttendTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlock = kBlock_;
  static constexpr int kRowsPerWarp = kBlock == 128 ? 32 : 16;
  static constexpr int kKeyTile = 64;
  /// P V one 16-key chunk at a time (P packed per chunk) where S and O fill the registers.
  static constexpr bool kChunkedPV = kRowsPerWarp == 32 && kHeadDim == 128;
  static constexpr int kMTiles = kRowsPerWarp / 16;
  static constexpr int kThreads = kBlock / kRowsPerWarp * 32;
  static constexpr std::size_t kSmemBytes =
      static_cast<std::size_t>(kBlock + 4 * kKeyTile) * kHeadDim * 2;
  static constexpr bool is_valid() {
    return (kHeadDim == 64 || kHeadDim == 128) && (kBlock == 64 || kBlock == 128) &&
           kBlock % kKeyTile == 0 && kSmemBytes <= 227 * 1024;
  }
  static_assert(is_valid(), "attention supports head_dim 64/128, block 64/128");
};

/// \brief Tile constants of the sm_90a attention (query block and key tile both 128).
/// | head_dim | smem: kQBuffers x Q + kStages x (K + V)                               |
/// |----------|-----------------------------------------------------------------------|
/// | 64       | 16 KiB per Q + kStages x 32 KiB                                       |
/// | 128      | 32 KiB per Q + kStages x 64 KiB (2 Q, 2 stages: 192 KiB; 1 Q, 3: 224) |
/// Two Q buffers (the persistent form) let the next tile's Q load during this tile.
template <int kHeadDim_, int kStages_, int kQBuffers_ = 1>
struct AttendSm90Traits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kStages = kStages_;
  static constexpr int kQBuffers = kQBuffers_;
  static constexpr int kBlock = 128;
  static constexpr int kConsumers = 2;
  static constexpr int kThreads = 128 * (1 + kConsumers);
  static constexpr int kPanels = kHeadDim / 64;     ///< 64-column panels of a tile
  static constexpr int kPanelBytes = kBlock * 128;  ///< 128 rows of 128 bytes
  static constexpr int kTileBytes = kPanels * kPanelBytes;
  static constexpr int kBarrierBytes = 256;
  static constexpr std::size_t kSmemBytes =
      static_cast<std::size_t>(kTileBytes) * (kQBuffers + 2 * kStages) + kBarrierBytes + 1024;
  static constexpr int kProducerRegs = 24;
  static constexpr int kConsumerRegs = 240;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
  static_assert(kSmemBytes <= 232448, "shared memory over the sm_90 limit");
  static_assert(8 * (4 * kStages + 6) <= kBarrierBytes, "mbarriers must fit kBarrierBytes");
  static_assert(kProducerRegs + kConsumers * kConsumerRegs <= 3 * 168, "register budget");
};

/// \brief Proxy-score kernels (stages 3-4): 64 sampled query rows (4 warps) per CTA, against
/// tiles of 64 sampled keys.
template <int kHeadDim_>
struct EstimateTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kRows = 64;
  static constexpr int kThreads = 128;
  static constexpr std::size_t kSmemBytes = static_cast<std::size_t>(kRows + 2 * 64) * kHeadDim * 2;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
};

/// \brief Most key chunks of the proxy passes: their lse partials (8 bytes per chunk and sample)
/// live in the unused upper half of the proxy K buffer, head_dim x 2 bytes per sample, so 16 fit
/// at head_dim 64 and more at 128.
constexpr int kMaxEstimateChunks = 16;

/// \brief Last-block mass kernel (stage 5): up to 128 last rows (8 warps) of one head against a
/// chunk of kBlocksPerCta key blocks.
template <int kHeadDim_>
struct MassTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kRows = 128;
  static constexpr int kThreads = 256;
  static constexpr int kBlocksPerCta = 4;  ///< amortizes the Q load over 4 key blocks
  static constexpr std::size_t kSmemBytes = static_cast<std::size_t>(kRows + 2 * 64) * kHeadDim * 2;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
};

/// \brief Sorting kernels (stages 5-6): bitonic sort of up to kMaxSortBlocks keys per CTA.
struct SortTraits {
  static constexpr int kThreads = 512;
  static constexpr int kMaxSortBlocks = 8192;  ///< 64 KiB of 64-bit keys: nb <= 8192
};

}  // namespace proxyattn::cuda
