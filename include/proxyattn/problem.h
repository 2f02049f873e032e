// proxyattn/problem.h: the validated description of one packed causal prefill, shared by every
// backend. Public entries build it once (validate_problem) and hand it to cpu:: or cuda::.
#pragma once

#include <cstdint>
#include <vector>

#include "proxyattn/types.h"

namespace proxyattn {

/// \brief Sizes of a packed prefill, enough to size the workspace without touching data.
struct ProblemShape {
  std::int64_t total_tokens = 0;
  std::int64_t num_qo_heads = 0;
  std::int64_t num_kv_heads = 0;
  std::int64_t head_dim = 0;
  std::vector<std::int32_t> cu_seqlens;  // [batch + 1], host

  std::int64_t batch() const { return static_cast<std::int64_t>(cu_seqlens.size()) - 1; }
  std::int64_t seq_len(std::int64_t i) const { return cu_seqlens[i + 1] - cu_seqlens[i]; }
  std::int64_t max_seqlen() const;
  std::int64_t group_size() const { return num_qo_heads / num_kv_heads; }
};

/// \brief Raw pointers, int64 strides (in elements) and sizes: the Params struct every backend
/// takes. Q/K/V/O rows are [total_tokens, heads, head_dim] with unit stride on head_dim.
struct Problem {
  ProblemShape shape;
  DType dtype = DType::kFloat32;
  Device device = Device::kCPU;
  int device_id = 0;
  float scale = 0.0f;  // resolved, never 0

  const void* q = nullptr;  // [total_tokens, num_qo_heads, head_dim]
  const void* k = nullptr;  // [total_tokens, num_kv_heads, head_dim]
  const void* v = nullptr;  // [total_tokens, num_kv_heads, head_dim]
  void* o = nullptr;        // [total_tokens, num_qo_heads, head_dim]
  float* lse = nullptr;     // [num_qo_heads, total_tokens], optional
  std::int64_t q_stride_n = 0, q_stride_h = 0;
  std::int64_t k_stride_n = 0, k_stride_h = 0;
  std::int64_t v_stride_n = 0, v_stride_h = 0;
  std::int64_t o_stride_n = 0, o_stride_h = 0;
  std::int64_t lse_stride_h = 0;  // lse[h * lse_stride_h + t]
};

/// \brief Checks cu_seqlens (monotone, starts at 0, ends at total_tokens, within int32) and
/// returns it as a vector; an empty span means one sequence of total_tokens.
std::vector<std::int32_t> validate_cu_seqlens(CuSeqlens cu_seqlens, std::int64_t total_tokens);

}  // namespace proxyattn
