// src/cuda/kernel/mma.cuh: sm_80 building blocks: cp.async tile loads into swizzled shared
// memory, ldmatrix, mma.sync m16n8k16 (bf16/fp16 in, fp32 accumulate) and the two warp-level
// products of attention (S = Q K^T and O += P V) over a key tile.
//
// Fragment layouts (PTX ISA, "mma.m16n8k16"), with g = lane / 4 and c = lane % 4:
//   A 16x16 row-major: a0 (g, 2c..2c+1)  a1 (g+8, 2c..)  a2 (g, 2c+8..)  a3 (g+8, 2c+8..)
//   B 16x8  (k x n):   b0 (k 2c..2c+1, n g)  b1 (k 2c+8.., n g)
//   C 16x8  fp32:      c0,c1 (g, 2c..2c+1)   c2,c3 (g+8, 2c..2c+1)
#pragma once

#include <cstdint>

#include "cuda/common.cuh"

namespace proxyattn::cuda::kernel {

constexpr int kKeyTile = 64;  ///< keys per shared-memory tile in every kernel

/// \brief Element offset of (row, col) in a [rows, kCols] 16-bit tile whose 16-byte chunks are
/// XOR-swizzled by row % 8, so that ldmatrix over 8 rows hits 8 distinct bank groups.
template <int kCols>
__device__ __forceinline__ int swizzle(int row, int col) {
  static_assert(kCols % 64 == 0, "rows must hold a multiple of 8 chunks of 16 bytes");
  const int chunk = (col >> 3) ^ (row & 7);
  return row * kCols + (chunk << 3) + (col & 7);
}

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

/// \brief 16-byte asynchronous copy global -> shared; zero-fills when !valid.
__device__ __forceinline__ void cp_async_16(void* smem, const void* gmem, bool valid) {
  const int bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(smem)),
               "l"(gmem), "r"(bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int kPending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

/// \brief Copies rows [first_row, first_row + kRows) of a strided global matrix into a swizzled
/// [kRows, kCols] tile; rows >= end_row become zeros (and read nothing: their copies point at
/// row 0, which callers guarantee exists whenever any row is valid).
/// Each thread keeps one column chunk and walks rows kThreads / kChunks apart, with one pointer
/// increment per copy: per-copy addresses held across the main loop cost the attention kernel
/// ~75 registers before (ptxas, hd128).
/// \param gmem row 0 of the matrix; row r starts at gmem + r * row_stride (elements)
template <typename T, int kRows, int kCols, int kThreads>
__device__ __forceinline__ void load_tile(T* smem, const T* gmem, std::int64_t row_stride,
                                          int first_row, int end_row, int tid) {
  constexpr int kChunks = kCols / 8;
  static_assert(kThreads % kChunks == 0 && (kRows * kChunks) % kThreads == 0,
                "tile must split evenly over threads");
  constexpr int kRowStep = kThreads / kChunks;
  static_assert(kRowStep % 8 == 0, "rows a thread copies must share row % 8 (swizzle)");
  const int row0 = tid / kChunks;
  const int col = (tid % kChunks) * 8;
  const T* src = gmem + static_cast<std::int64_t>(first_row + row0) * row_stride + col;
  const std::int64_t step = kRowStep * row_stride;
  T* dst = smem + swizzle<kCols>(row0, col);
#pragma unroll
  for (int i = 0; i < kRows / kRowStep; ++i) {
    const bool valid = first_row + row0 + i * kRowStep < end_row;
    cp_async_16(dst + i * kRowStep * kCols, valid ? src : gmem, valid);
    src += step;
  }
}

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// \brief c += a * b on one m16n8k16 tile.
template <typename T>
__device__ __forceinline__ void mma_16816(float (&c)[4], const std::uint32_t (&a)[4],
                                          std::uint32_t b0, std::uint32_t b1);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&c)[4], const std::uint32_t (&a)[4],
                                                         std::uint32_t b0, std::uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&c)[4], const std::uint32_t (&a)[4],
                                                  std::uint32_t b0, std::uint32_t b1) {
  asm(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// \brief 2^x with the SFU (ex2.approx.ftz); 2^-inf = 0.
__device__ __forceinline__ float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/// \brief A fragments of a warp's 16 rows [row0, row0 + 16) of a swizzled [*, kCols] tile.
/// \param rA [kCols / 16][4]: one m16k16 A fragment per 16 columns
template <typename T, int kCols>
__device__ __forceinline__ void load_a_fragments(std::uint32_t (&rA)[kCols / 16][4], const T* sA,
                                                 int row0, int lane) {
  const int row = row0 + (lane & 7) + ((lane >> 3) & 1) * 8;
#pragma unroll
  for (int ks = 0; ks < kCols / 16; ++ks) {
    const int col = ks * 16 + (lane >> 4) * 8;
    ldmatrix_x4(rA[ks], smem_addr(sA + swizzle<kCols>(row, col)));
  }
}

/// \brief Shared-memory addresses of a warp's ldmatrix.x4 rows in a swizzled [*, kCols] tile, as
/// 4 per-lane bases plus immediates: for 16-row step i and 16-column step k the address is
/// base[k % 4] + i * 16 * kCols * 2 + (k / 4) * 128 bytes. (The swizzle XORs the chunk with
/// row % 8, which every row of the lane shares, so only the low chunk bits vary with k % 4.)
/// \param row_lane the lane's row within a 16-row step   \param col_hi 0 or 1: high 8 columns
template <int kCols>
struct LdmatrixAddr {
  std::uint32_t base[4];
  __device__ __forceinline__ LdmatrixAddr(const void* tile, int row_lane, int col_hi) {
    const std::uint32_t tile_addr = smem_addr(tile) + row_lane * kCols * 2;
    const int x = col_hi ^ (row_lane & 7);
#pragma unroll
    for (int k4 = 0; k4 < 4; ++k4) base[k4] = tile_addr + (((2 * k4) ^ x) << 4);
  }
  __device__ __forceinline__ std::uint32_t at(int i, int k) const {
    return base[k % 4] + i * 16 * kCols * 2 + (k / 4) * 128;
  }
};

/// \brief rS = Q K^T for a warp's 16 query rows against a 64-key tile.
/// TUTORIAL: naive equivalent: rS[r][u] = sum_d Q[r][d] * K[u][d], fp32 accumulation.
/// \param rS [8][4] accumulators: key tile n8 = nt covers keys nt*8 .. nt*8+7
/// \param rQ [kHeadDim / 16][4] A fragments of the warp's query rows
/// \param sK [64, kHeadDim] swizzled key tile
template <typename T, int kHeadDim>
__device__ __forceinline__ void warp_qk(float (&rS)[kKeyTile / 8][4],
                                        const std::uint32_t (&rQ)[kHeadDim / 16][4], const T* sK,
                                        int lane) {
#pragma unroll
  for (int nt = 0; nt < kKeyTile / 8; ++nt) {
    rS[nt][0] = rS[nt][1] = rS[nt][2] = rS[nt][3] = 0.0f;
  }
  // Matrices of ldmatrix.x4: (keys 0-7, d lo), (keys 0-7, d hi), (keys 8-15, d lo), (8-15, hi).
  const LdmatrixAddr<kHeadDim> addr(sK, (lane & 7) + (lane >> 4) * 8, (lane >> 3) & 1);
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
#pragma unroll
    for (int np = 0; np < kKeyTile / 16; ++np) {
      std::uint32_t rK[4];  // b0,b1 of keys np*16+0..7, then of keys np*16+8..15
      ldmatrix_x4(rK, addr.at(np, ks));
      mma_16816<T>(rS[2 * np], rQ[ks], rK[0], rK[1]);
      mma_16816<T>(rS[2 * np + 1], rQ[ks], rK[2], rK[3]);
    }
  }
}

/// \brief rS[mt] = Q[mt] K^T for a warp's kMTiles x 16 query rows against a kKeys-key tile, with Q
/// read from shared memory (each K fragment then feeds kMTiles mma: half the K traffic per FLOP
/// at kMTiles = 2, which is what keeps an H100/H200 SM off its shared-memory limit).
/// TUTORIAL: naive equivalent: rS[r][u] = sum_d Q[r][d] * K[u][d], fp32 accumulation.
/// \param sQ [kMTiles * 16, kHeadDim] the warp's rows of the swizzled Q tile (row 0 % 8 == 0)
template <typename T, int kHeadDim, int kMTiles, int kKeys>
__device__ __forceinline__ void warp_qk_multi(float (&rS)[kMTiles][kKeys / 8][4], const T* sQ,
                                              const T* sK, int lane) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int nt = 0; nt < kKeys / 8; ++nt) {
      rS[mt][nt][0] = rS[mt][nt][1] = rS[mt][nt][2] = rS[mt][nt][3] = 0.0f;
    }
  }
  const LdmatrixAddr<kHeadDim> q_addr(sQ, (lane & 7) + ((lane >> 3) & 1) * 8, lane >> 4);
  const LdmatrixAddr<kHeadDim> k_addr(sK, (lane & 7) + (lane >> 4) * 8, (lane >> 3) & 1);
#pragma unroll
  for (int ks = 0; ks < kHeadDim / 16; ++ks) {
    std::uint32_t rQ[kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) ldmatrix_x4(rQ[mt], q_addr.at(mt, ks));
#pragma unroll
    for (int np = 0; np < kKeys / 16; ++np) {
      std::uint32_t rK[4];
      ldmatrix_x4(rK, k_addr.at(np, ks));
#pragma unroll
      for (int mt = 0; mt < kMTiles; ++mt) {
        mma_16816<T>(rS[mt][2 * np], rQ[mt], rK[0], rK[1]);
        mma_16816<T>(rS[mt][2 * np + 1], rQ[mt], rK[2], rK[3]);
      }
    }
  }
}

/// \brief Packs fp32 probabilities into A fragments of P (rounded to T), so that the fp32
/// scores die before P V and the registers go to the O accumulators.
template <typename T, int kMTiles, int kKeys>
__device__ __forceinline__ void pack_p(std::uint32_t (&rP)[kMTiles][kKeys / 16][4],
                                       const float (&rS)[kMTiles][kKeys / 8][4]) {
#pragma unroll
  for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk) {
      rP[mt][kk][0] = ElemTraits<T>::pack(rS[mt][2 * kk][0], rS[mt][2 * kk][1]);
      rP[mt][kk][1] = ElemTraits<T>::pack(rS[mt][2 * kk][2], rS[mt][2 * kk][3]);
      rP[mt][kk][2] = ElemTraits<T>::pack(rS[mt][2 * kk + 1][0], rS[mt][2 * kk + 1][1]);
      rP[mt][kk][3] = ElemTraits<T>::pack(rS[mt][2 * kk + 1][2], rS[mt][2 * kk + 1][3]);
    }
  }
}

/// \brief rO[mt] += P[mt] V over one 16-key chunk kk of the tile (keys kk*16 .. kk*16+15); each V
/// fragment feeds kMTiles mma. Kernels that pack P chunk by chunk call it directly, so that all of
/// P is never live next to S and O.
/// TUTORIAL: naive equivalent: rO[r][d] += sum_{u in chunk kk} P[r][u] * V[u][d], P already
/// rounded to T.
/// \param rP [kMTiles][4] A fragments of P for the chunk   \param sV [kKeys, kHeadDim] swizzled
template <typename T, int kHeadDim, int kMTiles>
__device__ __forceinline__ void warp_pv_chunk(float (&rO)[kMTiles][kHeadDim / 8][4],
                                              const std::uint32_t (&rP)[kMTiles][4], const T* sV,
                                              int kk, int lane) {
  const LdmatrixAddr<kHeadDim> addr(sV, (lane & 7) + ((lane >> 3) & 1) * 8, lane >> 4);
#pragma unroll
  for (int dp = 0; dp < kHeadDim / 16; ++dp) {
    std::uint32_t rV[4];
    ldmatrix_x4_trans(rV, addr.at(kk, dp));
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
      mma_16816<T>(rO[mt][2 * dp], rP[mt], rV[0], rV[1]);
      mma_16816<T>(rO[mt][2 * dp + 1], rP[mt], rV[2], rV[3]);
    }
  }
}

/// \brief rO[mt] += P[mt] V for kMTiles x 16 rows over the whole tile: warp_pv_chunk per chunk.
template <typename T, int kHeadDim, int kMTiles, int kKeys>
__device__ __forceinline__ void warp_pv_multi(float (&rO)[kMTiles][kHeadDim / 8][4],
                                              const std::uint32_t (&rP)[kMTiles][kKeys / 16][4],
                                              const T* sV, int lane) {
#pragma unroll
  for (int kk = 0; kk < kKeys / 16; ++kk) {
    std::uint32_t chunk[kMTiles][4];
#pragma unroll
    for (int mt = 0; mt < kMTiles; ++mt) {
#pragma unroll
      for (int e = 0; e < 4; ++e) chunk[mt][e] = rP[mt][kk][e];
    }
    warp_pv_chunk<T, kHeadDim, kMTiles>(rO, chunk, sV, kk, lane);
  }
}

/// \brief Max over the 4 lanes of a quad (the threads that share an accumulator row).
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

}  // namespace proxyattn::cuda::kernel
