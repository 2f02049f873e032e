// src/cuda/dispatch.h: run-time dtype / head_dim / block size to compiled kernels. One function
// answers both "which kernel" and "is it supported" (ggml's model).
#pragma once

#include <cstdint>

#include "cuda/params.h"
#include "proxyattn/types.h"

namespace proxyattn::cuda {

/// \brief Attention kernel families: none (unsupported), the portable sm_80 kernel (mma.sync,
/// cp.async; attend.cuh), the sm_90a kernel (wgmma, TMA, warp specialization; attend_sm90.cuh).
enum class KernelFamily : int { kNone = 0, kSm80Mma = 1, kSm90Wgmma = 2 };

/// \brief Stage counts of the sm_90a kernel per head_dim: the default, and the deeper ring measured
/// as a variant (3 x 64 KiB of K/V at head_dim 128 is what shared memory holds).
template <int kHeadDim>
struct Sm90Config {
  static constexpr int kStages = 2;
  static constexpr int kMoreStages = kHeadDim == 128 ? 3 : 4;
};

/// \brief Configurations of the sm_90a kernel. kAuto picks kOneTile for dense calls (one CTA per
/// (head, query block): as fast as the persistent form there and slightly faster at 16K) and
/// kPersistent for plan-driven calls (one CTA per SM taking tiles from a counter, longest first:
/// short sparse rows overlap the next tile's loads with this one's tail). kMoreStages and kPingPong
/// are variants the benchmarks measure (bf16 builds only; bench/gpu/NOTES.md).
enum class Sm90Variant : int { kAuto = 0, kOneTile, kPersistent, kMoreStages, kPingPong };

/// \brief Whether the sm_90a kernel is the default where it applies.
constexpr bool kSm90ByDefault = true;

struct AttendChoice {
  KernelFamily family = KernelFamily::kNone;
  Sm90Variant variant = Sm90Variant::kAuto;
};

/// \brief The attention kernel for (dtype, head_dim, block_size) on the current device: the one
/// answer to "which kernel" and "is it supported" (family kNone). The sm_90a kernel applies to
/// 128-row blocks on compute capability 9.0 in builds with sm_90a code; otherwise the sm_80
/// kernel. The environment variable PROXYATTN_CUDA_ATTEND overrides the choice for tests and
/// benchmarks: "sm80" (the portable kernel), "sm90" (the default sm_90a form), "sm90_one_tile",
/// "sm90_persistent", "sm90_more_stages", "sm90_pingpong" (where the sm_90a kernel applies).
/// Stage 7 launches (dispatch_attend) also keep the sm_80 kernel for q/k/v layouts whose head
/// stride exceeds the token stride (the sm_90a kernel's TMA descriptors want them the other way).
/// \param has_plan whether the call walks a plan (else dense attention)
AttendChoice choose_attend_kernel(DType dtype, std::int64_t head_dim, int block_size,
                                  bool has_plan = true);
/// \brief choose_attend_kernel(...).family.
KernelFamily attend_kernel_for(DType dtype, std::int64_t head_dim, int block_size);

/// \brief Stage 7 launch; throws naming the value when no kernel exists.
void dispatch_attend(DType dtype, std::int64_t head_dim, int block_size, const AttendParams& p,
                     int grid_rows, void* stream);
/// \brief Stages 2-4 of one sequence.
void dispatch_estimate(DType dtype, std::int64_t head_dim, const EstimateParams& p, void* stream);
/// \brief Stage 5 masses of one sequence.
void dispatch_mass(DType dtype, std::int64_t head_dim, const BudgetParams& p, void* stream);

}  // namespace proxyattn::cuda
