// proxyattn/types.h: dtypes, devices, tensor views and the library's error type.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

namespace proxyattn {

/// \brief Element types. fp32 and bf16 run on the CPU; bf16 and fp16 on CUDA.
enum class DType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

/// \brief Where a tensor's memory lives.
enum class Device : int { kCPU = 0, kCUDA = 1 };

const char* to_string(DType dtype);
const char* to_string(Device device);
/// \brief Parses "fp32", "bf16" or "fp16"; throws Error on anything else.
DType parse_dtype(const std::string& name);
std::size_t dtype_size(DType dtype);
/// \brief Element i of a host buffer of `dtype`, widened to float (bf16 and fp16 exactly).
float load_element(const void* data, DType dtype, std::int64_t i);
/// \brief Converts `count` host elements from one dtype to another, rounding to nearest even.
void convert_elements(const void* src, DType from, void* dst, DType to, std::int64_t count);

/// \brief The only exception the library throws. Messages name the argument, its value and what
/// was expected (docs/SPEC.md section 6).
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// \brief An Error whose message is "proxyattn: " and the streamed arguments: how code outside the
/// library (the CLI, the Python binding, the model runner) words its errors as the library does,
/// e.g. `throw error_of("gamma = ", g, ", expected 0 < gamma <= 1")`.
template <typename... Args>
Error error_of(const Args&... args) {
  std::ostringstream os;
  os << "proxyattn: ";
  (os << ... << args);
  return Error(os.str());
}

/// \brief text made safe for a one-line message: control characters, DEL, non-ASCII bytes and
/// (with escape_backslash) backslashes as \xNN, cut to max_chars input bytes followed by "...".
/// Hostile names then never forge lines, move the cursor or flood the terminal.
std::string printable(std::string_view text, std::size_t max_chars = 64,
                      bool escape_backslash = true);

/// \brief A non-owning view of a strided tensor of rank <= 4. Strides count elements.
struct TensorView {
  static constexpr int kMaxRank = 4;
  void* data = nullptr;
  DType dtype = DType::kFloat32;
  Device device = Device::kCPU;
  int device_id = 0;
  int rank = 0;
  std::int64_t shape[kMaxRank] = {};
  std::int64_t strides[kMaxRank] = {};

  /// \brief A row-major contiguous view.
  static TensorView contiguous(void* data, DType dtype, std::initializer_list<std::int64_t> shape,
                               Device device = Device::kCPU, int device_id = 0);
  std::int64_t numel() const;
  bool is_contiguous() const;
  std::string shape_string() const;
};

/// \brief Caller-owned scratch memory sized by workspace_size(); the plan lives in it.
struct Workspace {
  void* data = nullptr;
  std::size_t size = 0;
  Device device = Device::kCPU;
  int device_id = 0;
};

/// \brief Host-side cumulative sequence lengths, [batch + 1] int32, as FlashAttention's varlen
/// API takes them. An empty span (data == nullptr) means one sequence of all tokens.
struct CuSeqlens {
  const std::int32_t* data = nullptr;
  std::int64_t size = 0;  // batch + 1
};

/// \brief How a call runs: CPU threads (0 = all hardware threads) and the CUDA stream (a
/// cudaStream_t, nullptr = the default stream).
struct Runtime {
  int num_threads = 0;
  void* stream = nullptr;
  /// Opt-in (docs/SPEC.md section 6): scan q, k and v for NaN or Inf before anything runs and throw
  /// Error naming the first one. Without it, NaN/Inf propagate as dense attention would. On CUDA
  /// the scan copies the tensors to the host (synchronizes; for debugging, not for serving).
  bool check_finite = false;
};

}  // namespace proxyattn
