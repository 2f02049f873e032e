// src/cuda/dispatch.h: run-time dtype / head_dim / block size to compiled kernels. One function
// answers both "which kernel" and "is it supported" (ggml's model).
#pragma once

#include <cstdint>

#include "cuda/params.h"
#include "proxyattn/types.h"

namespace proxyattn::cuda {

/// \brief The kernel family for a dtype and head_dim; kNone when this build has none.
enum class KernelFamily : int { kNone = 0, kSm80Mma = 1 };

/// \brief kSm80Mma when an instantiation for (dtype, head_dim) was compiled in.
KernelFamily select_kernel(DType dtype, std::int64_t head_dim);

/// \brief Which attention kernel dispatch_attend launches. A benchmarking and testing hook, not
/// public API: it lets one process (bench/gpu/capi.cc, tests/cuda) measure and check candidate
/// kernels against the current one (tile_config.h, bench/gpu/NOTES.md "Variants").
///  - kAuto: the library's choice (today kOneHead);
///  - kOneHead: one query head per CTA, the traits' key tile;
///  - kKeyTile64: one head per CTA, 64-key tiles (hd128 x block 128 only);
///  - kGqaPair: two query heads of one KV head and one proxy group per CTA (hd128, blocks 64 and
///    128; group_size and heads_per_group even, or a dense launch).
/// A variant that does not apply to a launch's shape falls back to kOneHead silently.
enum class AttendVariant : int { kAuto = 0, kOneHead = 1, kKeyTile64 = 2, kGqaPair = 3 };

/// \brief Sets the process-wide attention variant (kAuto by default); later launches read it.
void set_attend_variant(AttendVariant v);
/// \brief The process-wide attention variant.
AttendVariant attend_variant();

/// \brief Stage 7 launch; throws naming the value when no kernel exists.
void dispatch_attend(DType dtype, std::int64_t head_dim, int block_size, const AttendParams& p,
                     int grid_rows, void* stream);
/// \brief Stages 2-4 of one sequence.
void dispatch_estimate(DType dtype, std::int64_t head_dim, const EstimateParams& p, void* stream);
/// \brief Stage 5 masses of one sequence.
void dispatch_mass(DType dtype, std::int64_t head_dim, const BudgetParams& p, void* stream);

}  // namespace proxyattn::cuda
