// src/common/types.cc: dtype and device names, tensor view helpers.
#include "proxyattn/types.h"

#include <cstdio>

#include "common/check.h"
#include "common/numeric.h"

namespace proxyattn {

const char* to_string(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return "fp32";
    case DType::kBFloat16: return "bf16";
    case DType::kFloat16: return "fp16";
  }
  return "unknown";
}

const char* to_string(Device device) {
  switch (device) {
    case Device::kCPU: return "cpu";
    case Device::kCUDA: return "cuda";
  }
  return "unknown";
}

DType parse_dtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return DType::kFloat32;
  if (name == "bf16" || name == "bfloat16") return DType::kBFloat16;
  if (name == "fp16" || name == "float16") return DType::kFloat16;
  PROXYATTN_FAIL("dtype = '", name, "', expected fp32, bf16 or fp16");
}

std::size_t dtype_size(DType dtype) { return dtype == DType::kFloat32 ? 4 : 2; }

TensorView TensorView::contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                                  Device device, int device_id) {
  TensorView t;
  PROXYATTN_CHECK(shape.size() <= static_cast<std::size_t>(kMaxRank), "rank = ", shape.size(),
                  ", expected at most ", kMaxRank);
  t.data = data;
  t.dtype = dtype;
  t.device = device;
  t.device_id = device_id;
  t.rank = static_cast<int>(shape.size());
  int i = 0;
  for (std::int64_t s : shape) t.shape[i++] = s;
  // Unsigned: sizes whose product leaves int64 wrap here (and fail the entries' extent checks)
  // instead of being undefined behaviour.
  std::uint64_t stride = 1;
  for (int d = t.rank - 1; d >= 0; --d) {
    t.strides[d] = static_cast<std::int64_t>(stride);
    stride *= static_cast<std::uint64_t>(t.shape[d]);
  }
  return t;
}

std::int64_t TensorView::numel() const {
  PROXYATTN_CHECK(rank >= 0 && rank <= kMaxRank, "TensorView.rank = ", rank, ", expected 0 .. ",
                  kMaxRank);
  std::int64_t n = 1;
  for (int d = 0; d < rank; ++d) {
    PROXYATTN_CHECK(!__builtin_mul_overflow(n, shape[d], &n), "TensorView.shape = ",
                    shape_string(), ", expected an element count that fits in 64 bits");
  }
  return n;
}

bool TensorView::is_contiguous() const {
  std::int64_t stride = 1;
  if (rank < 0 || rank > kMaxRank) return false;
  for (int d = rank - 1; d >= 0; --d) {
    if (shape[d] != 1 && strides[d] != stride) return false;
    stride *= shape[d];
  }
  return true;
}

std::string TensorView::shape_string() const {
  std::string s = "[";
  if (rank < 0 || rank > kMaxRank) return "[rank " + std::to_string(rank) + "]";
  for (int d = 0; d < rank; ++d) s += (d ? ", " : "") + std::to_string(shape[d]);
  return s + "]";
}

float load_element(const void* data, DType dtype, std::int64_t i) {
  return load_float(data, dtype, i);
}

void convert_elements(const void* src, DType from, void* dst, DType to, std::int64_t count) {
  for (std::int64_t e = 0; e < count; ++e) store_float(dst, to, e, load_float(src, from, e));
}

std::string printable(std::string_view text, std::size_t max_chars, bool escape_backslash) {
  std::string out;
  const std::size_t n = text.size() > max_chars ? max_chars : text.size();
  out.reserve(n + 8);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x20 || c >= 0x7f || (escape_backslash && c == '\\')) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (text.size() > max_chars) out += "...";
  return out;
}

}  // namespace proxyattn
