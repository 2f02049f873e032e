// src/cuda/tile_config.h: every derived constant of the CUDA kernels, one Traits struct each.
// Tile choices affect speed only, never results (each warp owns 16 query rows whatever the tile).
#pragma once

#include <cstddef>

namespace proxyattn::cuda {

/// \brief Attention kernel (stage 7). One CTA per (head, query block of kBlock rows), 4 warps;
/// the kGqaPair variant (kHeadsPerCta = 2) serves two query heads of one KV head and one proxy
/// group, 4 warps each, loading each K/V tile once for both.
///
/// | head_dim | block | keys | heads | rows/warp | warps | smem (Qs + 2x K + 2x V) | why |
/// |----------|-------|------|-------|-----------|-------|-------------------------|-----|
/// | 64       | 64    | 64   | 1     | 16        | 4     | 40 KiB  | Q kept in registers |
/// | 64       | 128   | 64   | 1     | 32        | 4     | 48 KiB  | |
/// | 128      | 64    | 64   | 1     | 16        | 4     | 80 KiB  | |
/// | 128      | 128   | 32   | 1     | 32        | 4     | 64 KiB  | 2 CTAs/SM; see below |
/// | 128      | 128   | 64   | 1     | 32        | 4     | 96 KiB  | variant kKeyTile64 |
/// | 128      | 64    | 64   | 2     | 16        | 8     | 96 KiB  | variant kGqaPair |
/// | 128      | 128   | 32   | 2     | 32        | 8     | 96 KiB  | variant kGqaPair |
/// 32 rows per warp: each K/V fragment read from shared memory feeds two mma. With 16 rows per
/// warp (8 warps per 128-row CTA) the H200 ran dense hd128 at 0.88x SDPA-flash (491 vs 432 ms at
/// 128K), which the shared-memory traffic count (64 KiB per MFLOP per warp) explains.
/// Key tiles are 64 keys (32 at hd128 x b128): a plan block is kBlock / kKeyTile tiles.
/// The variants (dispatch.h, AttendVariant; bench/gpu/NOTES.md "Variants") are benchmarking
/// candidates, not yet measured:
/// - kKeyTile64 (kKeyTile_ = 64 at hd128 x b128): FA2's 128 x 64 tile, half the per-FLOP
///   softmax/rescale work of 32-key tiles. S (64 registers) + O (128) leave no room for all of P,
///   so P is packed and multiplied by V one 16-key chunk at a time (kChunkedPV).
/// - kGqaPair (kHeadsPerCta_ = 2): half the K/V global and L2 traffic per query head; the warps
///   of the head with the smaller count idle on the blocks only its partner selected.
template <int kHeadDim_, int kBlock_, int kKeyTile_ = 0, int kHeadsPerCta_ = 1>
struct AttendTraits {
  static constexpr int kHeadDim = kHeadDim_;
  static constexpr int kBlock = kBlock_;
  static constexpr int kHeadsPerCta = kHeadsPerCta_;
  static constexpr int kRowsPerWarp = kBlock == 128 ? 32 : 16;
  /// 32 keys at 32 rows x 128 dims: S then takes 32 registers, and O (128) + S fit in 255.
  static constexpr int kDefaultKeyTile = (kRowsPerWarp == 32 && kHeadDim == 128) ? 32 : 64;
  static constexpr int kKeyTile = kKeyTile_ != 0 ? kKeyTile_ : kDefaultKeyTile;
  /// P V one 16-key chunk at a time (P packed per chunk) where S and O fill the registers.
  static constexpr bool kChunkedPV = kRowsPerWarp == 32 && kHeadDim == 128 && kKeyTile == 64;
  static constexpr int kMTiles = kRowsPerWarp / 16;
  static constexpr int kWarpsPerHead = kBlock / kRowsPerWarp;
  static constexpr int kWarps = kWarpsPerHead * kHeadsPerCta;
  static constexpr int kThreads = kWarps * 32;
  static constexpr std::size_t kSmemBytes =
      static_cast<std::size_t>(kHeadsPerCta * kBlock + 4 * kKeyTile) * kHeadDim * 2;
  static constexpr bool is_valid() {
    return (kHeadDim == 64 || kHeadDim == 128) && (kBlock == 64 || kBlock == 128) &&
           (kKeyTile == 32 || kKeyTile == 64) && kBlock % kKeyTile == 0 &&
           (kHeadsPerCta == 1 || kHeadsPerCta == 2) && kSmemBytes <= 227 * 1024;
  }
  static_assert(is_valid(), "attention supports head_dim 64/128, block 64/128, key tiles 32/64, "
                            "1 or 2 heads per CTA");
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
