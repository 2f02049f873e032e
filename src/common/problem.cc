// src/common/problem.cc: shape and argument validation for every public entry.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>

#include "common/check.h"
#include "common/numeric.h"
#include "common/validate.h"
#include "proxyattn/plan.h"
#include "common/problem.h"

namespace proxyattn {

std::int64_t ProblemShape::max_seqlen() const {
  std::int64_t m = 0;
  for (std::int64_t i = 0; i < batch(); ++i) m = std::max(m, seq_len(i));
  return m;
}

std::vector<std::int32_t> validate_cu_seqlens(CuSeqlens cu_seqlens, std::int64_t total_tokens) {
  PROXYATTN_CHECK(total_tokens >= 0 && total_tokens <= std::numeric_limits<std::int32_t>::max(),
                  "total_tokens = ", total_tokens, ", expected 0 <= total_tokens < 2^31");
  if (cu_seqlens.data == nullptr) {
    PROXYATTN_CHECK(cu_seqlens.size == 0, "cu_seqlens.data = nullptr with size ", cu_seqlens.size,
                    ", expected size 0 (one sequence)");
    return {0, static_cast<std::int32_t>(total_tokens)};
  }
  PROXYATTN_CHECK(cu_seqlens.size >= 2, "cu_seqlens.size = ", cu_seqlens.size,
                  ", expected batch + 1 >= 2");
  std::vector<std::int32_t> cu(cu_seqlens.data, cu_seqlens.data + cu_seqlens.size);
  PROXYATTN_CHECK(cu[0] == 0, "cu_seqlens[0] = ", cu[0], ", expected 0");
  for (std::size_t i = 1; i < cu.size(); ++i) {
    PROXYATTN_CHECK(cu[i] >= cu[i - 1], "cu_seqlens[", i, "] = ", cu[i],
                    ", expected >= cu_seqlens[", i - 1, "] = ", cu[i - 1], " (monotone)");
  }
  PROXYATTN_CHECK(cu.back() == total_tokens, "cu_seqlens[", cu.size() - 1, "] = ", cu.back(),
                  ", expected total_tokens = ", total_tokens);
  return cu;
}

bool dtype_supported(DType dtype, Device device) {
  if (device == Device::kCPU) return dtype == DType::kFloat32 || dtype == DType::kBFloat16;
  return dtype == DType::kBFloat16 || dtype == DType::kFloat16;
}

bool head_dim_supported(std::int64_t head_dim, Device device) {
  if (device == Device::kCPU) return head_dim >= 8 && head_dim <= 512 && head_dim % 8 == 0;
  return head_dim == 64 || head_dim == 128;
}

namespace {

// Whether a view addresses no element (a zero in its shape). Not numel() == 0: the product of
// hostile sizes can wrap to 0 and would skip every layout check.
bool is_empty(const TensorView& t) {
  for (int d = 0; d < t.rank; ++d) {
    if (t.shape[d] == 0) return true;
  }
  return false;
}

// Bytes from a non-empty view's first element to the end of its last one, for sizes >= 1 and
// strides >= 0; throws Error naming the view when that leaves int64 (offsets in the kernels are
// int64 element counts and must not wrap).
std::int64_t extent_bytes(const char* name, const TensorView& t) {
  std::int64_t last = 0, elements = 1;
  bool ok = true;
  for (int d = 0; d < t.rank && ok; ++d) {
    std::int64_t step = 0;
    ok = !__builtin_mul_overflow(t.shape[d] - 1, t.strides[d], &step) &&
         !__builtin_add_overflow(last, step, &last) &&
         !__builtin_mul_overflow(elements, t.shape[d], &elements);
  }
  std::int64_t bytes = 0;
  ok = ok && !__builtin_add_overflow(last, std::int64_t{1}, &last) &&
       !__builtin_mul_overflow(last, static_cast<std::int64_t>(dtype_size(t.dtype)), &bytes);
  PROXYATTN_CHECK(ok, name, ".shape = ", t.shape_string(), " with strides [", t.strides[0], ", ",
                  t.strides[1], ", ", t.strides[2], "], expected sizes and strides whose extent "
                  "and element count fit in 64 bits");
  return bytes;
}

// An output whose elements share memory (a zero stride, or rows that overlap) would have threads
// race on it and keep only one of several results. Dimensions of size > 1, by increasing stride:
// each stride must step past everything the smaller ones span. (Some exotic interleavings that
// never collide fail this too; outputs are not laid out that way.)
void check_distinct_elements(const char* name, const TensorView& t) {
  int dims[TensorView::kMaxRank];
  int n = 0;
  for (int d = 0; d < t.rank; ++d) {
    if (t.shape[d] > 1) dims[n++] = d;
  }
  for (int i = 1; i < n; ++i) {  // insertion sort by stride (n <= 4)
    for (int j = i; j > 0 && t.strides[dims[j]] < t.strides[dims[j - 1]]; --j) {
      std::swap(dims[j], dims[j - 1]);
    }
  }
  std::int64_t span = 0;  // last offset reached by the smaller dimensions (fits: extent checked)
  for (int i = 0; i < n; ++i) {
    const int d = dims[i];
    PROXYATTN_CHECK(t.strides[d] > span, name, ".strides[", d, "] = ", t.strides[d],
                    " with shape ", t.shape_string(), ", expected a layout whose elements do not ",
                    "share memory (stride > ", span, ")");
    span += (t.shape[d] - 1) * t.strides[d];
  }
}

// An output must not share memory with an input: other threads (CTAs on CUDA) may still read the
// input where one writes. Byte ranges [data, data + extent) of two non-empty views.
void check_disjoint(const char* out_name, const TensorView& out, const char* in_name,
                    const TensorView& in) {
  if (is_empty(out) || is_empty(in)) return;
  const auto o = reinterpret_cast<std::uintptr_t>(out.data);
  const auto i = reinterpret_cast<std::uintptr_t>(in.data);
  const auto o_end = o + static_cast<std::uintptr_t>(extent_bytes(out_name, out));
  const auto i_end = i + static_cast<std::uintptr_t>(extent_bytes(in_name, in));
  const bool apart = o_end <= i || i_end <= o;
  PROXYATTN_CHECK(apart, out_name, ".data = ", out.data, " overlaps ", in_name, ".data = ",
                  in.data, ", expected an output in memory of its own");
}

// Checks one [tokens, heads, head_dim] operand.
void check_operand(const char* name, const TensorView& t, const TensorView& q) {
  PROXYATTN_CHECK(t.rank == 3, name, ".rank = ", t.rank, ", expected 3 ([tokens, heads, head_dim])");
  // An enum value cast from a bad integer would otherwise pass as "not CUDA" and run the CPU
  // kernels on memory the caller says lives elsewhere.
  PROXYATTN_CHECK(t.device == Device::kCPU || t.device == Device::kCUDA, name, ".device = ",
                  static_cast<int>(t.device), ", expected Device::kCPU (0) or Device::kCUDA (1)");
  PROXYATTN_CHECK(t.dtype == DType::kFloat32 || t.dtype == DType::kBFloat16 ||
                      t.dtype == DType::kFloat16,
                  name, ".dtype = ", static_cast<int>(t.dtype), ", expected a DType (0, 1 or 2)");
  PROXYATTN_CHECK(t.dtype == q.dtype, name, ".dtype = ", to_string(t.dtype), ", expected q.dtype = ",
                  to_string(q.dtype));
  PROXYATTN_CHECK(t.device == q.device && t.device_id == q.device_id, name, ".device = ",
                  to_string(t.device), ":", t.device_id, ", expected q.device = ",
                  to_string(q.device), ":", q.device_id);
  for (int d = 0; d < 3; ++d) {
    PROXYATTN_CHECK(t.shape[d] >= 0, name, ".shape = ", t.shape_string(), ", expected sizes >= 0");
  }
  // An empty operand addresses no element: its strides are whatever the producer wrote (NumPy 2
  // exports zero-size arrays with zero strides), so only a non-empty one has a layout to check.
  if (is_empty(t)) return;
  PROXYATTN_CHECK(t.strides[2] == 1 || t.shape[2] <= 1, name, ".strides[2] = ", t.strides[2],
                  ", expected 1 (unit stride on head_dim)");
  PROXYATTN_CHECK(t.strides[0] >= 0 && t.strides[1] >= 0, name, ".strides = [", t.strides[0], ", ",
                  t.strides[1], ", ", t.strides[2], "], expected non-negative strides");
  extent_bytes(name, t);
  const std::size_t esize = dtype_size(t.dtype);
  const std::size_t align = t.device == Device::kCUDA ? 16 : esize;
  PROXYATTN_CHECK(t.data != nullptr, name, ".data = nullptr, expected memory for ",
                  t.shape_string());
  PROXYATTN_CHECK(reinterpret_cast<std::uintptr_t>(t.data) % align == 0, name, ".data = ", t.data,
                  ", expected ", align, "-byte alignment");
  if (t.device == Device::kCUDA) {
    const std::int64_t vec = static_cast<std::int64_t>(16 / esize);
    PROXYATTN_CHECK(t.strides[0] % vec == 0 && t.strides[1] % vec == 0, name, ".strides = [",
                    t.strides[0], ", ", t.strides[1], ", 1], expected multiples of ", vec,
                    " elements (16 bytes) on cuda");
  }
}

}  // namespace

Problem make_problem(const TensorView& q, const TensorView& k, const TensorView* v,
                     const TensorView* out, const TensorView* lse, CuSeqlens cu_seqlens,
                     float scale) {
  PROXYATTN_CHECK(q.rank == 3, "q.rank = ", q.rank, ", expected 3 ([tokens, heads, head_dim])");
  check_operand("q", q, q);
  check_operand("k", k, q);
  PROXYATTN_CHECK(k.shape[0] == q.shape[0], "k.shape = ", k.shape_string(),
                  ", expected tokens = q.shape[0] = ", q.shape[0]);
  PROXYATTN_CHECK(k.shape[2] == q.shape[2], "k.shape = ", k.shape_string(),
                  ", expected head_dim = q.shape[2] = ", q.shape[2]);
  PROXYATTN_CHECK(k.shape[1] >= 1 && q.shape[1] >= 1, "num_kv_heads = ", k.shape[1],
                  ", num_qo_heads = ", q.shape[1], ", expected >= 1");
  PROXYATTN_CHECK(q.shape[1] % k.shape[1] == 0, "num_qo_heads = ", q.shape[1],
                  ", expected a multiple of num_kv_heads = ", k.shape[1]);
  if (v != nullptr) {
    check_operand("v", *v, q);
    for (int d = 0; d < 3; ++d) {
      PROXYATTN_CHECK(v->shape[d] == k.shape[d], "v.shape = ", v->shape_string(),
                      ", expected k.shape = ", k.shape_string());
    }
  }
  if (out != nullptr) {
    check_operand("out", *out, q);
    if (!is_empty(*out)) check_distinct_elements("out", *out);
    for (int d = 0; d < 3; ++d) {
      PROXYATTN_CHECK(out->shape[d] == q.shape[d], "out.shape = ", out->shape_string(),
                      ", expected q.shape = ", q.shape_string());
    }
  }
  Problem p;
  p.shape.total_tokens = q.shape[0];
  p.shape.num_qo_heads = q.shape[1];
  p.shape.num_kv_heads = k.shape[1];
  p.shape.head_dim = q.shape[2];
  p.shape.cu_seqlens = validate_cu_seqlens(cu_seqlens, q.shape[0]);
  if (lse != nullptr) {
    PROXYATTN_CHECK(lse->rank == 2, "lse.rank = ", lse->rank, ", expected 2 ([num_qo_heads, tokens])");
    PROXYATTN_CHECK(lse->dtype == DType::kFloat32, "lse.dtype = ", to_string(lse->dtype),
                    ", expected fp32");
    PROXYATTN_CHECK(lse->device == q.device && lse->device_id == q.device_id, "lse.device = ",
                    to_string(lse->device), ", expected q.device = ", to_string(q.device));
    PROXYATTN_CHECK(lse->shape[0] == q.shape[1] && lse->shape[1] == q.shape[0], "lse.shape = ",
                    lse->shape_string(), ", expected [", q.shape[1], ", ", q.shape[0], "]");
    if (!is_empty(*lse)) {  // as for the operands: an empty lse has no layout
      PROXYATTN_CHECK(lse->strides[1] == 1 || lse->shape[1] <= 1, "lse.strides[1] = ",
                      lse->strides[1], ", expected 1");
      PROXYATTN_CHECK(lse->strides[0] >= 0, "lse.strides[0] = ", lse->strides[0], ", expected >= 0");
      extent_bytes("lse", *lse);
      check_distinct_elements("lse", *lse);
      PROXYATTN_CHECK(lse->data != nullptr, "lse.data = nullptr, expected memory for ",
                      lse->shape_string());
      PROXYATTN_CHECK(reinterpret_cast<std::uintptr_t>(lse->data) % 4 == 0, "lse.data = ",
                      lse->data, ", expected 4-byte alignment");
    }
  }
  for (const TensorView* o : {out, lse}) {
    if (o == nullptr) continue;
    const char* name = o == out ? "out" : "lse";
    check_disjoint(name, *o, "q", q);
    check_disjoint(name, *o, "k", k);
    if (v != nullptr) check_disjoint(name, *o, "v", *v);
  }
  if (out != nullptr && lse != nullptr) check_disjoint("lse", *lse, "out", *out);
  PROXYATTN_CHECK(std::isfinite(scale) && scale >= 0.0f, "scale = ", scale,
                  ", expected 0 (1/sqrt(head_dim)) or a positive finite number");
  p.dtype = q.dtype;
  p.device = q.device;
  p.device_id = q.device_id;
  p.scale = scale != 0.0f ? scale
                          : static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.shape[2])));
  p.q = q.data;
  p.k = k.data;
  p.q_stride_n = q.strides[0];
  p.q_stride_h = q.strides[1];
  p.k_stride_n = k.strides[0];
  p.k_stride_h = k.strides[1];
  if (v != nullptr) {
    p.v = v->data;
    p.v_stride_n = v->strides[0];
    p.v_stride_h = v->strides[1];
  }
  if (out != nullptr) {
    p.o = out->data;
    p.o_stride_n = out->strides[0];
    p.o_stride_h = out->strides[1];
  }
  if (lse != nullptr) {
    p.lse = static_cast<float*>(lse->data);
    p.lse_stride_h = lse->strides[0];
  }
  return p;
}

void check_problem_shape(const ProblemShape& shape) {
  PROXYATTN_CHECK(shape.num_kv_heads >= 1 && shape.num_qo_heads >= 1, "shape.num_qo_heads = ",
                  shape.num_qo_heads, ", shape.num_kv_heads = ", shape.num_kv_heads,
                  ", expected >= 1");
  PROXYATTN_CHECK(shape.num_qo_heads % shape.num_kv_heads == 0, "shape.num_qo_heads = ",
                  shape.num_qo_heads, ", expected a multiple of shape.num_kv_heads = ",
                  shape.num_kv_heads);
  PROXYATTN_CHECK(shape.head_dim >= 0, "shape.head_dim = ", shape.head_dim, ", expected >= 0");
  // An empty vector would read as "one sequence" in a CuSeqlens span; a shape spells it out.
  PROXYATTN_CHECK(shape.cu_seqlens.size() >= 2, "shape.cu_seqlens.size = ",
                  shape.cu_seqlens.size(), ", expected batch + 1 >= 2");
  validate_cu_seqlens(CuSeqlens{shape.cu_seqlens.data(),
                                static_cast<std::int64_t>(shape.cu_seqlens.size())},
                      shape.total_tokens);
}

void check_config_fits(const Config& config, const ProblemShape& shape) {
  check_problem_shape(shape);
  config.validate();
  PROXYATTN_CHECK(shape.num_kv_heads % config.num_proxy_heads == 0, "config.num_proxy_heads = ",
                  config.num_proxy_heads, ", expected a divisor of num_kv_heads = ",
                  shape.num_kv_heads);
  const std::int64_t nb = (shape.max_seqlen() + config.block_size - 1) / config.block_size;
  PROXYATTN_CHECK(nb <= kMaxBlocks, "max_seqlen = ", shape.max_seqlen(), ", expected at most ",
                  kMaxBlocks, " blocks of ", config.block_size, " tokens");
}

void check_workspace(const Workspace& workspace, std::size_t needed, Device device, int device_id) {
  PROXYATTN_CHECK(workspace.size >= needed, "workspace.size = ", workspace.size,
                  ", expected at least workspace_size() = ", needed);
  PROXYATTN_CHECK(needed == 0 || workspace.data != nullptr, "workspace.data = nullptr, expected ",
                  needed, " bytes of memory");
  PROXYATTN_CHECK(workspace.device == device && workspace.device_id == device_id,
                  "workspace.device = ", to_string(workspace.device), ":", workspace.device_id,
                  ", expected the tensors' device ", to_string(device), ":", device_id);
  PROXYATTN_CHECK(reinterpret_cast<std::uintptr_t>(workspace.data) % 256 == 0, "workspace.data = ",
                  workspace.data, ", expected 256-byte alignment");
}

}  // namespace proxyattn
