// src/common/validate.h: the checks every public entry runs before it touches memory
// (docs/SPEC.md section 6). Each violation throws proxyattn::Error naming the argument, its value and
// what was expected.
#pragma once

#include "common/problem.h"
#include "proxyattn/config.h"
#include "proxyattn/types.h"

namespace proxyattn {

/// \brief Validates q, k and (optionally) v, out and lse, and returns the Problem they form.
/// v, out and lse may be nullptr (plan() reads only q and k).
Problem make_problem(const TensorView& q, const TensorView& k, const TensorView* v,
                     const TensorView* out, const TensorView* lse, CuSeqlens cu_seqlens,
                     float scale);

/// \brief Checks a ProblemShape given directly (workspace_size(), plan_from_block_mask()): heads
/// >= 1 and a multiple, head_dim >= 0 and cu_seqlens as validate_cu_seqlens() wants it.
void check_problem_shape(const ProblemShape& shape);

/// \brief Checks that config fits the problem: num_kv_heads % g and the int16 block index range.
void check_config_fits(const Config& config, const ProblemShape& shape);

/// \brief Checks that a workspace is large enough, on the right device and aligned.
void check_workspace(const Workspace& workspace, std::size_t needed, Device device, int device_id);

}  // namespace proxyattn
