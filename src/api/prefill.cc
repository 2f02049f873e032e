// src/prefill.cc: the public entries. Each validates once, then dispatches by the tensors'
// device to cpu:: or cuda::. Nothing is written before validation has passed.
#include "proxyattn/prefill.h"

#include <cmath>
#include <vector>

#include "common/check.h"
#include "common/numeric.h"

#include "common/validate.h"
#include "common/workspace.h"
#include "cpu/backend.h"
#include "cuda/backend.h"

namespace proxyattn {

namespace {

// Scans one [tokens, heads, head_dim] operand; device data is copied to the host first.
void check_finite_operand(const char* name, const void* data, std::int64_t heads,
                          std::int64_t stride_n, std::int64_t stride_h, const Problem& p,
                          const Runtime& runtime) {
  const std::int64_t T = p.shape.total_tokens, D = p.shape.head_dim;
  if (T == 0 || heads == 0 || D == 0) return;
  const std::int64_t span = (T - 1) * stride_n + (heads - 1) * stride_h + D;  // elements
  std::vector<std::uint8_t> host;
  const void* base = data;
  if (p.device == Device::kCUDA) {
    host.resize(static_cast<std::size_t>(span) * dtype_size(p.dtype));
    cuda::copy_to_host(host.data(), data, host.size(), runtime);
    base = host.data();
  }
  for (std::int64_t t = 0; t < T; ++t) {
    for (std::int64_t h = 0; h < heads; ++h) {
      for (std::int64_t d = 0; d < D; ++d) {
        const float x = load_float(base, p.dtype, t * stride_n + h * stride_h + d);
        PROXYATTN_CHECK(std::isfinite(x), name, "[", t, ", ", h, ", ", d, "] = ", x,
                        ", expected finite inputs (Runtime::check_finite is on)");
      }
    }
  }
}

void check_finite(const Problem& p, const Runtime& runtime) {
  if (!runtime.check_finite) return;
  check_finite_operand("q", p.q, p.shape.num_qo_heads, p.q_stride_n, p.q_stride_h, p, runtime);
  check_finite_operand("k", p.k, p.shape.num_kv_heads, p.k_stride_n, p.k_stride_h, p, runtime);
  if (p.v != nullptr) {
    check_finite_operand("v", p.v, p.shape.num_kv_heads, p.v_stride_n, p.v_stride_h, p, runtime);
  }
}

// The one support check of every entry: the contract's dtypes and head_dims per device (common),
// then whether this build's CUDA backend has the kernel (cuda::is_supported).
void check_backend(const Problem& p) {
  PROXYATTN_CHECK(dtype_supported(p.dtype, p.device), "q.dtype = ", to_string(p.dtype), " on ",
                  to_string(p.device), ", expected ",
                  p.device == Device::kCPU ? "fp32 or bf16" : "bf16 or fp16");
  PROXYATTN_CHECK(head_dim_supported(p.shape.head_dim, p.device), "head_dim = ", p.shape.head_dim,
                  " on ", to_string(p.device), ", expected ",
                  p.device == Device::kCPU ? "a multiple of 8 in [8, 512]" : "64 or 128");
  if (p.device == Device::kCUDA) {
    PROXYATTN_CHECK(cuda::available(), "q.device = cuda, but no CUDA device is available to proxyattn");
    PROXYATTN_CHECK(cuda::is_supported(p.dtype, p.shape.head_dim), "dtype ", to_string(p.dtype),
                    " with head_dim ", p.shape.head_dim, " has no CUDA kernel in this build");
  }
}

// Runtime fields every entry checks before it runs.
void check_runtime(const Runtime& runtime) {
  PROXYATTN_CHECK(runtime.num_threads >= 0, "runtime.num_threads = ", runtime.num_threads,
                  ", expected >= 0 (0 = all hardware threads)");
}

void check_plan_matches(const Plan& plan, const Problem& p) {
  // p was built from the plan's own cu_seqlens, so validation already tied them to q's tokens.
  const PlanLayout& l = plan.layout;
  PROXYATTN_CHECK(l.num_qo_heads == p.shape.num_qo_heads && l.num_kv_heads == p.shape.num_kv_heads,
                  "plan heads = ", l.num_qo_heads, "/", l.num_kv_heads, ", expected the tensors' ",
                  p.shape.num_qo_heads, "/", p.shape.num_kv_heads);
  PROXYATTN_CHECK(plan.device == p.device && plan.device_id == p.device_id, "plan.device = ",
                  to_string(plan.device), ", expected q.device = ", to_string(p.device));
  PROXYATTN_CHECK(plan.group_order != nullptr && plan.counts != nullptr && plan.last_order != nullptr,
                  "plan has null arrays, expected a plan from plan() or plan_from_block_mask()");
}

}  // namespace

bool is_supported(DType dtype, std::int64_t head_dim, Device device) {
  if (!dtype_supported(dtype, device) || !head_dim_supported(head_dim, device)) return false;
  return device != Device::kCUDA || cuda::is_supported(dtype, head_dim);
}

ProblemShape problem_shape(const TensorView& q, const TensorView& k, CuSeqlens cu_seqlens) {
  return make_problem(q, k, nullptr, nullptr, nullptr, cu_seqlens, 0.0f).shape;
}

std::size_t workspace_size(const ProblemShape& shape, const Config& config) {
  check_config_fits(config, shape);
  return make_workspace_layout(shape, config).total_bytes;
}

Plan plan(const TensorView& q, const TensorView& k, CuSeqlens cu_seqlens, const Config& config,
          Workspace workspace, const Runtime& runtime) {
  check_runtime(runtime);
  config.validate();
  const Problem p = make_problem(q, k, nullptr, nullptr, nullptr, cu_seqlens, config.scale);
  check_config_fits(config, p.shape);
  check_backend(p);
  const WorkspaceLayout layout = make_workspace_layout(p.shape, config);
  check_workspace(workspace, layout.total_bytes, p.device, p.device_id);
  check_finite(p, runtime);
  Plan result = bind_plan(layout, workspace, p.scale);
  if (p.device == Device::kCUDA) {
    cuda::plan(p, config, result, workspace, runtime);
  } else {
    cpu::plan(p, config, result, workspace, runtime);
  }
  return result;
}

void attend(const TensorView& q, const TensorView& k, const TensorView& v, const Plan& plan,
            const TensorView& out, const TensorView* lse, const Runtime& runtime) {
  check_runtime(runtime);
  check_plan_layout(plan.layout);  // before anything indexes by it
  Problem p = make_problem(q, k, &v, &out, lse, CuSeqlens{plan.layout.cu_seqlens.data(),
                                                          static_cast<std::int64_t>(plan.layout.cu_seqlens.size())},
                           plan.scale);
  check_plan_matches(plan, p);
  check_backend(p);
  check_finite(p, runtime);
  if (plan.device == Device::kCPU) validate_host_plan(plan);  // device plans raise flags instead
  if (p.shape.total_tokens == 0) return;  // nothing to write; backends size scratch by heads
  if (p.device == Device::kCUDA) {
    cuda::attend(p, plan, runtime);
  } else {
    cpu::attend(p, plan, runtime);
  }
}

Plan prefill(const TensorView& q, const TensorView& k, const TensorView& v, CuSeqlens cu_seqlens,
             const Config& config, Workspace workspace, const TensorView& out,
             const TensorView* lse, const Runtime& runtime) {
  // Validate every operand before the plan writes into the workspace.
  check_runtime(runtime);
  config.validate();
  const Problem p = make_problem(q, k, &v, &out, lse, cu_seqlens, config.scale);
  check_config_fits(config, p.shape);
  check_backend(p);
  check_finite(p, runtime);
  Runtime checked = runtime;  // q, k and v were scanned once, above
  checked.check_finite = false;
  Plan result = plan(q, k, cu_seqlens, config, workspace, checked);
  attend(q, k, v, result, out, lse, checked);
  return result;
}

void dense(const TensorView& q, const TensorView& k, const TensorView& v, CuSeqlens cu_seqlens,
           const TensorView& out, const TensorView* lse, float scale, const Runtime& runtime) {
  check_runtime(runtime);
  const Problem p = make_problem(q, k, &v, &out, lse, cu_seqlens, scale);
  check_backend(p);
  check_finite(p, runtime);
  if (p.shape.total_tokens == 0) return;  // nothing to write; backends size scratch by heads
  if (p.device == Device::kCUDA) {
    cuda::dense(p, runtime);
  } else {
    cpu::dense(p, runtime);
  }
}

}  // namespace proxyattn
