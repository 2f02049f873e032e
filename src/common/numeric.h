// src/common/numeric.h: bf16/fp16 <-> fp32 conversions on the host (round to nearest even).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common/check.h"
#include "proxyattn/types.h"

namespace proxyattn {

/// \brief a * b for sizes and offsets; throws Error naming `what` when it leaves int64 (a size
/// that wraps would size a buffer smaller than what is then written into it).
inline std::int64_t checked_mul(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  PROXYATTN_CHECK(!__builtin_mul_overflow(a, b, &r), what, " = ", a, " x ", b,
                  " overflows 64 bits, expected smaller sizes");
  return r;
}

/// \brief a + b for sizes and offsets; throws Error naming `what` when it leaves int64.
inline std::int64_t checked_add(std::int64_t a, std::int64_t b, const char* what) {
  std::int64_t r = 0;
  PROXYATTN_CHECK(!__builtin_add_overflow(a, b, &r), what, " = ", a, " + ", b,
                  " overflows 64 bits, expected smaller sizes");
  return r;
}

inline float bf16_to_float(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);  // NaN
  const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

inline float fp16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t man = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(man), -24);
  } else if (exp == 31) {
    f = man ? NAN : INFINITY;
  } else {
    f = std::ldexp(static_cast<float>(man | 0x400u), static_cast<int>(exp) - 25);
  }
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u |= sign;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

inline std::uint16_t float_to_fp16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const float a = std::fabs(f);
  if (std::isnan(f)) return static_cast<std::uint16_t>(sign | 0x7e00u);
  if (a >= 65520.0f) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (a < 6.103515625e-05f) {  // subnormal: multiples of 2^-24, nearbyint is round-half-even
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(std::nearbyint(a * 16777216.0f)));
  }
  int e;
  const float m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  std::uint32_t man = static_cast<std::uint32_t>(std::nearbyint(m * 2048.0f));  // 11 bits
  if (man == 2048u) {
    man = 1024u;
    ++e;
  }
  const std::uint32_t exp = static_cast<std::uint32_t>(e + 14);
  if (exp >= 31) return static_cast<std::uint16_t>(sign | 0x7c00u);
  return static_cast<std::uint16_t>(sign | (exp << 10) | (man & 0x3ffu));
}

/// \brief Element i of a buffer of dtype, as float.
inline float load_float(const void* data, DType dtype, std::int64_t i) {
  switch (dtype) {
    case DType::kFloat32: return static_cast<const float*>(data)[i];
    case DType::kBFloat16: return bf16_to_float(static_cast<const std::uint16_t*>(data)[i]);
    case DType::kFloat16: return fp16_to_float(static_cast<const std::uint16_t*>(data)[i]);
  }
  return 0.0f;
}

/// \brief Rounds a float to the nearest value of dtype (RNE), returned as float.
inline float round_to(DType dtype, float x) {
  switch (dtype) {
    case DType::kFloat32: return x;
    case DType::kBFloat16: return bf16_to_float(float_to_bf16(x));
    case DType::kFloat16: return fp16_to_float(float_to_fp16(x));
  }
  return x;
}

/// \brief Stores a float into element i of a buffer of dtype (RNE).
inline void store_float(void* data, DType dtype, std::int64_t i, float x) {
  switch (dtype) {
    case DType::kFloat32: static_cast<float*>(data)[i] = x; break;
    case DType::kBFloat16: static_cast<std::uint16_t*>(data)[i] = float_to_bf16(x); break;
    case DType::kFloat16: static_cast<std::uint16_t*>(data)[i] = float_to_fp16(x); break;
  }
}

}  // namespace proxyattn
