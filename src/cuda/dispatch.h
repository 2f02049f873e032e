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

/// \brief Stage 7 launch; throws naming the value when no kernel exists.
void dispatch_attend(DType dtype, std::int64_t head_dim, int block_size, const AttendParams& p,
                     int grid_rows, void* stream);
/// \brief Stages 2-4 of one sequence.
void dispatch_estimate(DType dtype, std::int64_t head_dim, const EstimateParams& p, void* stream);
/// \brief Stage 5 masses of one sequence.
void dispatch_mass(DType dtype, std::int64_t head_dim, const BudgetParams& p, void* stream);

}  // namespace proxyattn::cuda
