// src/cuda/tile_config.h: every derived constant of the CUDA kernels, one Traits struct each.
// Tile choices affect speed only, never results (each warp owns 16 query rows whatever the tile).
#pragma once

#include <cstddef>

namespace proxyattn::cuda {

/// \brief Attention kernel (stage 7). One CTA per (head, query block of kBlock rows), 4 warps.
///
/// | kHeadDim | kBlock | rows/warp | smem (Q + 2x K + 2x V) | why |
/// |----------|--------|-----------|------------------------|-----|
/// | 64       | 64     | 16        | 40 KiB                 | Q kept in registers |
/// | 64       | 128    | 32        | 48 KiB                 | |
/// | 128      | 64     | 16        | 80 KiB                 | |
/// | 128      | 128    | 32        | 64 KiB (32-key tiles)  | 2 CTAs/SM; see below |
/// 32 rows per warp: each K/V fragment read from shared memory feeds two mma. With 16 rows per
/// warp (8 warps per 128-row CTA) the H200 ran dense hd128 at 0.88x SDPA-flash (491 vs 432 ms at
/// 128K), which the shared-memory traffic count (64 KiB per MFLOP per warp) explains.
/// Key tiles are 64 keys (32 at hd128 x b128): a plan block is kBlock / kKeyTile tiles.
template <int kHeadDim_, int kBlock_>
struct AttendTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlock = kBlock_;
  static constexpr int kRowsPerWarp = kBlock == 128 ? 32 : 16;
  /// 32 keys at 32 rows x 128 dims: S then takes 32 registers, and O (128) + S fit in 255.
  static constexpr int kKeyTile = (kRowsPerWarp == 32 && kHeadDim == 128) ? 32 : 64;
  static constexpr int kMTiles = kRowsPerWarp / 16;
  static constexpr int kWarps = kBlock / kRowsPerWarp;
  static constexpr int kThreads = kWarps * 32;
  static constexpr std::size_t kSmemBytes =
      static_cast<std::size_t>(kBlock + 4 * kKeyTile) * kHeadDim * 2;
  static constexpr bool is_valid() {
    return (kHeadDim == 64 || kHeadDim == 128) && (kBlock == 64 || kBlock == 128);
  }
  static_assert(is_valid(), "attention supports head_dim 64/128 and block 64/128");
};

/// \brief Proxy-score kernels (stages 3-4): 64 sampled query rows (4 warps) per CTA, against
/// tiles of 64 sampled keys.
template <int kHeadDim_>
struct EstimateTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kRows = 64;
  static constexpr int kWarps = 4;
  static constexpr int kThreads = 128;
  static constexpr std::size_t kSmemBytes = static_cast<std::size_t>(kRows + 2 * 64) * kHeadDim * 2;
  static_assert(kHeadDim == 64 || kHeadDim == 128, "head_dim 64 or 128");
};

/// \brief Last-block mass kernel (stage 5): up to 128 last rows (8 warps) of one head against a
/// chunk of kBlocksPerCta key blocks.
template <int kHeadDim_>
struct MassTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kRows = 128;
  static constexpr int kWarps = 8;
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
