// src/cuda/kernel/sort.cuh: the shared-memory rankings of stages 5 and 6 (budget.cuh, select.cuh):
// bitonic sorts of 64-bit keys
//   (rank class << 32) | n,  rank class = 0 for forced blocks, ~order(score) for numbers
//   (larger score, smaller key), 0xffffffff for NaN,
// so one ascending sort gives: forced first, then scores descending, NaN last, ties to smaller n.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/rules.h"

namespace proxyattn::cuda::kernel {

constexpr std::uint64_t kPadKey = ~std::uint64_t{0};

/// \brief Rank class of a score: monotone decreasing in the score, NaN last, never 0.
__device__ __forceinline__ std::uint32_t rank_class(float score) {
  if (isnan(score)) return 0xffffffffu;
  const std::uint32_t bits = __float_as_uint(score);
  const std::uint32_t ordered = (bits >> 31) ? ~bits : (bits | 0x80000000u);  // increasing
  return ~ordered;  // >= 0x003fffff for any number, so forced blocks (0) come first
}

/// \brief Whether key block n of query block m is forced (sink, diagonal) under the flags.
__device__ __forceinline__ bool is_forced(int n, int m, int keep_sink, int keep_diagonal) {
  return rules::is_forced(m, n, keep_sink != 0, keep_diagonal != 0);
}

/// \brief Sorts keys[0, size) ascending, padding to the next power of two with kPadKey.
__device__ inline void bitonic_sort(std::uint64_t* keys, int size, int padded) {
  for (int i = size + threadIdx.x; i < padded; i += blockDim.x) keys[i] = kPadKey;
  __syncthreads();
  for (int k = 2; k <= padded; k <<= 1) {
    for (int j = k >> 1; j > 0; j >>= 1) {
      for (int i = threadIdx.x; i < padded; i += blockDim.x) {
        const int partner = i ^ j;
        if (partner > i) {
          const std::uint64_t a = keys[i];
          const std::uint64_t b = keys[partner];
          const bool ascending = (i & k) == 0;
          if ((a > b) == ascending) {
            keys[i] = b;
            keys[partner] = a;
          }
        }
      }
      __syncthreads();
    }
  }
}

__host__ __device__ __forceinline__ int next_pow2(int n) {
  int p = 1;
  while (p < n) p <<= 1;
  return p;
}

}  // namespace proxyattn::cuda::kernel
