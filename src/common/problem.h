// src/common/problem.h: the validated description of one packed causal prefill that every backend
// takes. The public entries build it once (make_problem in common/validate.h) and hand it to cpu::
// or cuda::.
#pragma once

#include <cstdint>
#include <vector>

#include "proxyattn/problem.h"
#include "proxyattn/types.h"

namespace proxyattn {

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

/// \brief The contract's dtypes per device: fp32 and bf16 on the CPU, bf16 and fp16 on CUDA.
bool dtype_supported(DType dtype, Device device);
/// \brief The contract's head_dims per device: a multiple of 8 in [8, 512] on the CPU, 64 and
/// 128 on CUDA. A CUDA build may instantiate fewer (cuda::is_supported).
bool head_dim_supported(std::int64_t head_dim, Device device);

}  // namespace proxyattn
