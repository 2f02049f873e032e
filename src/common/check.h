// src/common/check.h: the library's argument checks. PROXYATTN_CHECK throws proxyattn::Error
// with the streamed message and the function, file and line; library code never prints or exits.
// Internal: public headers and callers outside src/ throw proxyattn::Error themselves.
#pragma once

#include <sstream>

#include "proxyattn/types.h"

namespace proxyattn {

namespace detail {
template <typename... Args>
[[noreturn]] void throw_error(const char* func, const char* file, int line, const Args&... args) {
  std::ostringstream os;
  os << "proxyattn: ";
  (os << ... << args);
  os << " [" << func << " at " << file << ":" << line << "]";
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
