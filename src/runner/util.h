// src/runner/util.h: small helpers of the runner: checked sizes, message-safe strings, 16-bit
// floats, a wall clock.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "proxyattn/types.h"

namespace proxyattn::runner {

/// \brief Throws proxyattn::Error with "proxyattn: " and the streamed arguments.
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw error_of(args...);
}

/// Throws proxyattn::Error with the streamed message when cond is false.
#define RUNNER_CHECK(cond, ...)                          \
  do {                                                   \
    if (!(cond)) ::proxyattn::runner::fail(__VA_ARGS__); \
  } while (0)
/// Throws proxyattn::Error unconditionally.
#define RUNNER_FAIL(...) ::proxyattn::runner::fail(__VA_ARGS__)

/// \brief a * b, or Error naming what overflowed.
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  RUNNER_CHECK(!__builtin_mul_overflow(a, b, &r), what, ": ", a, " x ", b,
               " overflows a 64-bit size");
  return r;
}

/// \brief a + b, or Error naming what overflowed.
inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  RUNNER_CHECK(!__builtin_add_overflow(a, b, &r), what, ": ", a, " + ", b,
               " overflows a 64-bit size");
  return r;
}

/// \brief s made safe for a message (proxyattn::printable), cut at 200 bytes by default.
inline std::string printable(const std::string& s, std::size_t max_chars = 200) {
  return ::proxyattn::printable(s, max_chars);
}

/// \brief "[a, b, c]".
inline std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

inline float bf16_to_float(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline float fp16_to_float(std::uint16_t h) {
  const float sign = (h & 0x8000u) ? -1.0f : 1.0f;
  const int exp = (h >> 10) & 0x1f;
  const int man = h & 0x3ff;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(man), -24);
  if (exp == 31) return man ? NAN : sign * INFINITY;
  return sign * std::ldexp(static_cast<float>(man | 0x400), exp - 25);
}

/// \brief Milliseconds since an arbitrary epoch, monotonic.
inline double now_ms() {
  using Clock = std::chrono::steady_clock;
  return std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch()).count();
}

}  // namespace proxyattn::runner
