// src/common/check.h: the library's argument checks. PROXYATTN_CHECK throws proxyattn::Error
// with the streamed message and the function, file and line; library code never prints or exits.
// Internal: public headers and callers outside src/ throw proxyattn::Error themselves.
#pragma once

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>
#include <type_traits>

#include "proxyattn/types.h"

namespace proxyattn {

namespace detail {

/// \brief Shortest decimal text that reads back to the same value (so 1.0000001 never prints as
/// 1 in a message that says why it failed).
template <typename T>
std::string shortest_text(T v) {
  static_assert(std::is_floating_point_v<T>);
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[40];
  for (int digits = 1; digits <= 17; ++digits) {
    std::snprintf(buf, sizeof(buf), "%.*g", digits, static_cast<double>(v));
    const T back = static_cast<T>(std::strtod(buf, nullptr));
    if (back == v) break;
  }
  return buf;
}

using ::proxyattn::printable;

// One message argument: floating-point values in their shortest round-trip form.
template <typename T>
void put(std::ostringstream& os, const T& arg) {
  if constexpr (std::is_floating_point_v<T>) {
    os << shortest_text(arg);
  } else {
    os << arg;
  }
}

// __FILE__ relative to the source tree ("src/cpu/pipeline.cc"), not the build machine's path.
inline std::string_view source_path(std::string_view file) {
  const std::size_t at = file.rfind("src/");
  return at == std::string_view::npos ? file : file.substr(at);
}

template <typename... Args>
[[noreturn]] void throw_error(const char* func, const char* file, int line, const Args&... args) {
  std::ostringstream os;
  os << "proxyattn: ";
  (put(os, args), ...);
  os << " [" << func << " at " << source_path(file) << ":" << line << "]";
  throw Error(os.str());
}
}  // namespace detail

/// Throws proxyattn::Error with the streamed message when cond is false.
#define PROXYATTN_CHECK(cond, ...)                                                    \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      ::proxyattn::detail::throw_error(__func__, __FILE__, __LINE__, ##__VA_ARGS__); \
    }                                                                                 \
  } while (0)

/// Throws proxyattn::Error unconditionally.
#define PROXYATTN_FAIL(...) ::proxyattn::detail::throw_error(__func__, __FILE__, __LINE__, __VA_ARGS__)

}  // namespace proxyattn
