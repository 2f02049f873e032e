// src/cuda/common.cuh: error checks and element-type traits shared by every CUDA file.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "common/check.h"
#include "proxyattn/types.h"

/// Throws proxyattn::Error naming the CUDA call and its error string.
#define PROXYATTN_CUDA_CHECK(expr)                                                        \
  do {                                                                                    \
    const cudaError_t proxyattn_err_ = (expr);                                            \
    if (proxyattn_err_ != cudaSuccess) {                                                  \
      PROXYATTN_FAIL("CUDA error in ", #expr, ": ", cudaGetErrorName(proxyattn_err_), " (", \
                     cudaGetErrorString(proxyattn_err_), ")");                            \
    }                                                                                     \
  } while (0)

/// Checks the last launch on this thread.
#define PROXYATTN_CUDA_CHECK_LAUNCH() PROXYATTN_CUDA_CHECK(cudaGetLastError())

namespace proxyattn::cuda {

/// \brief Device element type of a DType, and its conversions.
template <typename T>
struct ElemTraits;

template <>
struct ElemTraits<__nv_bfloat16> {
  using Pair = __nv_bfloat162;
  __device__ static float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
  __device__ static __nv_bfloat16 from_float(float x) { return __float2bfloat16_rn(x); }
  /// Two floats into one 32-bit register, lo in the low half.
  __device__ static std::uint32_t pack(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&v);
  }
};

template <>
struct ElemTraits<__half> {
  using Pair = __half2;
  __device__ static float to_float(__half x) { return __half2float(x); }
  __device__ static __half from_float(float x) { return __float2half_rn(x); }
  __device__ static std::uint32_t pack(float lo, float hi) {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&v);
  }
};

inline cudaStream_t to_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

}  // namespace proxyattn::cuda
