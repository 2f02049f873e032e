// proxyattn/prefill.h: the op. One contract, two backends (CPU and CUDA), chosen by the tensors'
// device.
//
// Operands (docs/SPEC.md section 1), packed varlen, causal:
//   q   [total_tokens, num_qo_heads, head_dim]   unit stride on head_dim, other strides free
//   k,v [total_tokens, num_kv_heads, head_dim]   same dtype and device as q
//   out [total_tokens, num_qo_heads, head_dim]   same dtype as q
//   lse [num_qo_heads, total_tokens] fp32        optional; natural-log sum of exp(scaled logits)
// GQA: query head h reads KV head h / (num_qo_heads / num_kv_heads). Query t of a sequence
// attends keys u <= t of the same sequence whose key block the plan selects for (h, block of t).
// A row that attends nothing (only possible in a user-built plan) gets out = 0, lse = -inf.
// Every entry validates before it touches memory and throws proxyattn::Error; nothing is written
// to out on error.
#pragma once

#include <cstddef>

#include "proxyattn/config.h"
#include "proxyattn/plan.h"
#include "proxyattn/problem.h"
#include "proxyattn/types.h"

namespace proxyattn {

/// \brief Bytes of workspace that plan() and prefill() need for these shapes and config.
std::size_t workspace_size(const ProblemShape& shape, const Config& config);

/// \brief Shapes of q and k with these cu_seqlens (validated).
ProblemShape problem_shape(const TensorView& q, const TensorView& k, CuSeqlens cu_seqlens);

/// \brief Stages 1-6: proxy scores, block scores, budgets and selection, into the workspace.
/// \param workspace at least workspace_size() bytes on q's device; the returned Plan views it.
Plan plan(const TensorView& q, const TensorView& k, CuSeqlens cu_seqlens, const Config& config,
          Workspace workspace, const Runtime& runtime = {});

/// \brief Stage 7: block-sparse attention over the plan (computed or user-built).
/// \param lse nullptr or [num_qo_heads, total_tokens] fp32.
void attend(const TensorView& q, const TensorView& k, const TensorView& v, const Plan& plan,
            const TensorView& out, const TensorView* lse = nullptr, const Runtime& runtime = {});

/// \brief plan() then attend(); sequences of at most config.dense_below() tokens run dense.
Plan prefill(const TensorView& q, const TensorView& k, const TensorView& v, CuSeqlens cu_seqlens,
             const Config& config, Workspace workspace, const TensorView& out,
             const TensorView* lse = nullptr, const Runtime& runtime = {});

/// \brief Dense causal attention, the baseline, with the same operands. scale 0 = 1/sqrt(d).
void dense(const TensorView& q, const TensorView& k, const TensorView& v, CuSeqlens cu_seqlens,
           const TensorView& out, const TensorView* lse = nullptr, float scale = 0.0f,
           const Runtime& runtime = {});

/// \brief Whether a backend supports this dtype, head_dim and device (no data is read).
bool is_supported(DType dtype, std::int64_t head_dim, Device device);

}  // namespace proxyattn
