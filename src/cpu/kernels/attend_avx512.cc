// src/cpu/kernels/attend_avx512.cc: flash attention with AVX-512 fp32 FMA (fp32 inputs on every
// AVX-512 machine; bf16 inputs where AVX512-BF16 is missing, converted exactly to fp32). Compiled
// with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma; reached only through
// kernels::attend_kernel() when the processor has AVX-512.
//
// Same structure as the vdpbf16ps kernel (attend_avx512bf16.cc): strips of R query rows, S in
// R x NKV = 24 zmm accumulators (S[r][16 keys] += bcast(Q[r][d]) * Kp[d][16 keys]), base-2 online
// softmax with vector exp2, O[r][16 dims] += bcast(P[r][k]) * Vp[k][16 dims]; masked blocks stop
// each row's PV at its last visible key.
#include "cpu/kernels/avx512_common.h"

namespace proxyattn::cpu::kernels {
namespace {

// O rows (W zmm columns from c0, cw valid) = O * alpha + P[:, 0:keys] V[0:keys].
template <int R, int W>
inline void pv_chunk(float* const* acc, const float* alpha, const float* const* prow,
                     const float* vp, int dp, int c0, int cw, int keys) {
  __m512 o[R][W];
  load_scaled_rows<R, W>(o, acc, alpha, c0, cw);
  for (int k = 0; k < keys; ++k) {
    __m512 pb[R];
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) pb[r] = _mm512_set1_ps(prow[r][k]);
    const float* v = vp + static_cast<std::size_t>(k) * dp + 16 * c0;
    #pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) {
        const __m512 vv = _mm512_load_ps(v + 16 * c);
        #pragma GCC unroll 32
        for (int r = 0; r < R; ++r) o[r][c] = _mm512_fmadd_ps(pb[r], vv, o[r][c]);
      }
    }
  }
  store_rows<R, W>(o, acc, c0, cw);
}

// Masked blocks: O rows = O * alpha + P V over each row's own keys [0, keys[r]) (merge-masked
// FMA, so keys a row cannot see are never multiplied in).
template <int R, int W>
inline void pv_chunk_masked(float* const* acc, const float* alpha, const float* const* prow,
                            const float* vp, int dp, int c0, int cw, const int* keys,
                            int max_keys) {
  __m512 o[R][W];
  load_scaled_rows<R, W>(o, acc, alpha, c0, cw);
  for (int k = 0; k < max_keys; ++k) {
    __m512 pb[R];
    __mmask16 live[R];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      pb[r] = _mm512_set1_ps(prow[r][k]);
      // A vector compare, not (cond ? 0xFFFF : 0): GCC 12 materializes that 0/-1 value and
      // moves it into the mask register with kmovb, which sets only lanes 0-7.
      live[r] = _mm512_cmplt_epi32_mask(_mm512_set1_epi32(k), _mm512_set1_epi32(keys[r]));
    }
    const float* v = vp + static_cast<std::size_t>(k) * dp + 16 * c0;
#pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) {
        const __m512 vv = _mm512_load_ps(v + 16 * c);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) o[r][c] = _mm512_mask3_fmadd_ps(pb[r], vv, o[r][c], live[r]);
      }
    }
  }
  store_rows<R, W>(o, acc, c0, cw);
}

// S[r][j] += Q[r] . K over the strip; masked blocks skip key vectors j >= nvec.
template <int R, int NKV, bool kMasked>
inline void qk_strip(__m512 (&s)[R][NKV], const float* qrow, const float* kp, int d, int nvec) {
  constexpr int kB = 16 * NKV;
  for (int c = 0; c < d; ++c) {
    __m512 qb[R];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) qb[r] = _mm512_set1_ps(qrow[r * d + c]);
    const float* kc = kp + static_cast<std::size_t>(c) * kB;
#pragma GCC unroll 32
    for (int j = 0; j < NKV; ++j) {
      if (kMasked && j >= nvec) continue;
      const __m512 kv = _mm512_load_ps(kc + 16 * j);
#pragma GCC unroll 32
      for (int r = 0; r < R; ++r) s[r][j] = _mm512_fmadd_ps(qb[r], kv, s[r][j]);
    }
  }
}

template <int R, int NKV, int kD>
void attend_item(const AttendItem& it) {
  constexpr int kB = 16 * NKV;
  constexpr int kW = 24 / R;
  const int d = kD != 0 ? kD : it.head_dim;
  const int dp = kD != 0 ? kD : it.padded_dim;
  const int nc = dp / 16;
  const ScratchLayout sl = scratch_layout(kB, d, dp);
  float* acc = it.scratch + sl.acc;  // [b'][dp]
  float* m = it.scratch + sl.m;      // [b']
  float* l = it.scratch + sl.l;      // [b'][16]
  float* pbuf = it.scratch + sl.p;   // [R][b]
  float* qf = it.scratch + sl.q;     // [b'][d]
  const int rows = it.rows;
  const int srows = (rows + R - 1) / R * R;
  for (int r = 0; r < srows; ++r) {
    m[r] = kNegInf;
    _mm512_store_ps(l + 16 * r, _mm512_setzero_ps());
    const int row = min_int(r, rows - 1);
    float* dst = qf + static_cast<std::size_t>(r) * d;
    if (it.bf16) {
      const auto* src = static_cast<const std::uint16_t*>(it.q) + row * it.q_stride;
      for (int c = 0; c < d; ++c) dst[c] = bf16_bits_to_float(src[c]);
    } else {
      const auto* src = static_cast<const float*>(it.q) + row * it.q_stride;
      for (int c = 0; c < d; ++c) dst[c] = src[c];
    }
  }
  const __m512 vc = _mm512_set1_ps(it.scale * kLog2e);
  const std::size_t bytes = it.packed_block_bytes;

  for (int kb = 0; kb < it.num_key_blocks; ++kb) {
    const std::int64_t n = it.key_blocks[kb];
    const std::int64_t k0 = n * kB;
    const int cols = static_cast<int>(min_i64(kB, it.n_tokens - k0));
    const auto* kp = reinterpret_cast<const float*>(static_cast<const char*>(it.k_packed) +
                                                    n * bytes);  // [d][b]
    const auto* vp = reinterpret_cast<const float*>(static_cast<const char*>(it.v_packed) +
                                                    n * bytes);  // [b][dp]
    for (int r0 = 0; r0 < rows; r0 += R) {
      int valid[R];
      bool full = true;
      #pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        valid[r] = r0 + r < rows ? valid_keys(it.q0 + r0 + r, k0, cols) : 0;
        full = full && valid[r] == kB;
      }
      const float* qrow = qf + static_cast<std::size_t>(r0) * d;
      __m512 s[R][NKV];
      #pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        #pragma GCC unroll 32
        for (int j = 0; j < NKV; ++j) s[r][j] = _mm512_setzero_ps();
      }
      if (full) {
        qk_strip<R, NKV, false>(s, qrow, kp, d, NKV);
      } else {
        int max_valid = 0;
        for (int r = 0; r < R; ++r) max_valid = valid[r] > max_valid ? valid[r] : max_valid;
        qk_strip<R, NKV, true>(s, qrow, kp, d, (max_valid + 15) / 16);
      }
      float alpha[R];
      #pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        alpha[r] = 1.0f;
        const int row = r0 + r;
        float* prow = pbuf + r * kB;
        if (valid[r] == 0) continue;
        __m512 mx = _mm512_set1_ps(kNegInf);
        #pragma GCC unroll 32
        for (int j = 0; j < NKV; ++j) {
          mx = _mm512_mask_max_ps(mx, prefix_mask(valid[r] - 16 * j), mx, s[r][j]);
        }
        const float block_max = _mm512_reduce_max_ps(mx) * (it.scale * kLog2e);
        if (!update_max(&m[row], block_max, &alpha[r])) {
          valid[r] = 0;
          continue;
        }
        const __m512 neg_m = _mm512_set1_ps(-m[row]);
        __m512 sum = _mm512_setzero_ps();
        #pragma GCC unroll 32
        for (int j = 0; j < NKV; ++j) {
          __m512 pj = exp2_ps(_mm512_fmadd_ps(s[r][j], vc, neg_m));
          if (!full) pj = _mm512_maskz_mov_ps(prefix_mask(valid[r] - 16 * j), pj);
          sum = _mm512_add_ps(sum, pj);
          _mm512_store_ps(prow + 16 * j, pj);
        }
        float* lr = l + 16 * row;
        _mm512_store_ps(lr, _mm512_fmadd_ps(_mm512_load_ps(lr), _mm512_set1_ps(alpha[r]), sum));
      }
      if (full) {
        float* arow[R];
        const float* prow[R];
        #pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
          arow[r] = acc + (r0 + r) * dp;
          prow[r] = pbuf + r * kB;
        }
        for (int c0 = 0; c0 < nc; c0 += kW) {
          pv_chunk<R, kW>(arow, alpha, prow, vp, dp, c0, min_int(kW, nc - c0), kB);
        }
      } else {
        float* arow[R];
        const float* prow[R];
        int max_keys = 0;
        for (int r = 0; r < R; ++r) {
          arow[r] = acc + (r0 + r) * dp;
          prow[r] = pbuf + r * kB;
          max_keys = valid[r] > max_keys ? valid[r] : max_keys;
        }
        for (int c0 = 0; c0 < nc; c0 += kW) {
          pv_chunk_masked<R, kW>(arow, alpha, prow, vp, dp, c0, min_int(kW, nc - c0), valid,
                                 max_keys);
        }
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const float lsum = _mm512_reduce_add_ps(_mm512_load_ps(l + 16 * r));
    void* o = it.bf16 ? static_cast<void*>(static_cast<std::uint16_t*>(it.o) + r * it.o_stride)
                      : static_cast<void*>(static_cast<float*>(it.o) + r * it.o_stride);
    store_row(acc + r * dp, m[r], lsum, d, it.bf16, o, it.lse != nullptr ? it.lse + r : nullptr);
  }
}

}  // namespace

void attend_avx512_fp32(const AttendItem& it) {
  const bool b128 = it.block == 128;
  switch (it.head_dim) {
    case 64: return b128 ? attend_item<3, 8, 64>(it) : attend_item<6, 4, 64>(it);
    case 128: return b128 ? attend_item<3, 8, 128>(it) : attend_item<6, 4, 128>(it);
    default: return b128 ? attend_item<3, 8, 0>(it) : attend_item<6, 4, 0>(it);
  }
}

double peak_avx512_fp32_loop(double seconds) {
  __m512 acc[24];
  #pragma GCC unroll 32
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  __m512 a = _mm512_set1_ps(1.0f), b = _mm512_set1_ps(1e-30f);
  __asm__("" : "+v"(a), "+v"(b));  // opaque: keeps real FMAs (no folding into adds)
  const std::int64_t per_round = 1 << 16;
  std::int64_t rounds = 0;
  const double t0 = now_seconds();
  double t = t0;
  do {
    for (std::int64_t i = 0; i < per_round; ++i) {
      #pragma GCC unroll 32
      for (int k = 0; k < 24; ++k) acc[k] = _mm512_fmadd_ps(a, b, acc[k]);
    }
    ++rounds;
    t = now_seconds();
  } while (t - t0 < seconds);
  __m512 total = acc[0];
  #pragma GCC unroll 32
  for (int i = 1; i < 24; ++i) total = _mm512_add_ps(total, acc[i]);
  sink_float(_mm512_reduce_add_ps(total));
  return static_cast<double>(rounds) * per_round * 24 * 32 / (t - t0) * 1e-9;
}

}  // namespace proxyattn::cpu::kernels

namespace proxyattn::cpu::kernels {
namespace {

inline float key_value(const float* k, int c) { return k[c]; }
inline float key_value(const std::uint16_t* k, int c) { return bf16_bits_to_float(k[c]); }

// Logit tiles by fp32 FMA: S^T[key][16 rows] += bcast(K[key][c]) * Qp[c][16 rows]; KR keys x RV
// row vectors = 24 accumulators.
template <int RV, typename KT>
void stats_item(const StatsItem& it) {
  // Keys per step: 24 accumulators with the row vectors in registers (RV < 4), else 16 with KR
  // broadcasts and one Q vector at a time (more spills under GCC 12).
  constexpr int KR = RV < 4 ? 24 / RV : 16 / RV;
  const int d = it.head_dim, rp = it.rows_pad;
  const auto* qp = static_cast<const float*>(it.q_packed);  // [d][rp]
  const auto* k = static_cast<const KT*>(it.k);
  const std::int64_t last = min_i64(it.n_keys, it.row0 + it.rows);  // keys [0, last) visited
  const std::int64_t nkb = (it.n_keys + it.key_block - 1) / it.key_block;
  for (std::int64_t kb = 0; kb < nkb; ++kb) {
    const std::int64_t u0 = kb * it.key_block;
    float* bmax = it.bmax + kb * rp;
    float* bsum = it.bsum + kb * rp;
    if (u0 >= last) {
      for (int r = 0; r < rp; ++r) {
        bmax[r] = kNegInf;
        bsum[r] = 0.0f;
      }
      continue;
    }
    const int nk = static_cast<int>(min_i64(it.key_block, last - u0));
    stats_begin(rp, bmax, bsum);
    for (int i = 0; i < nk; i += KR) {
      const KT* krow[KR];
#pragma GCC unroll 32
      for (int j = 0; j < KR; ++j) krow[j] = k + min_i64(u0 + i + j, last - 1) * it.k_stride;
      // K rows are read in place (strided, from L3 or memory): fetch those of a later step now.
      for (int j = 0; j < KR; ++j) {
        const char* ahead = reinterpret_cast<const char*>(
            k + min_i64(u0 + i + j + kPrefetchKeys, last - 1) * it.k_stride);
        for (int byte = 0; byte < d * static_cast<int>(sizeof(KT)); byte += 64) _mm_prefetch(ahead + byte, _MM_HINT_T0);
      }
      __m512 acc[KR][RV];
#pragma GCC unroll 32
      for (int j = 0; j < KR; ++j) {
#pragma GCC unroll 32
        for (int v = 0; v < RV; ++v) acc[j][v] = _mm512_setzero_ps();
      }
      for (int c = 0; c < d; ++c) {
        if constexpr (RV < 4) {  // few row vectors: keep them in registers, one key at a time
          __m512 qv[RV];
#pragma GCC unroll 32
          for (int v = 0; v < RV; ++v) qv[v] = _mm512_load_ps(qp + c * rp + 16 * v);
#pragma GCC unroll 32
          for (int j = 0; j < KR; ++j) {
            const __m512 kv = _mm512_set1_ps(key_value(krow[j], c));
#pragma GCC unroll 32
            for (int v = 0; v < RV; ++v) acc[j][v] = _mm512_fmadd_ps(kv, qv[v], acc[j][v]);
          }
          continue;
        }
        // KR key broadcasts, then each Q vector loaded once and used KR times.
        __m512 kv[KR];
#pragma GCC unroll 32
        for (int j = 0; j < KR; ++j) kv[j] = _mm512_set1_ps(key_value(krow[j], c));
#pragma GCC unroll 32
        for (int v = 0; v < RV; ++v) {
          const __m512 qv = _mm512_load_ps(qp + c * rp + 16 * v);
#pragma GCC unroll 32
          for (int j = 0; j < KR; ++j) acc[j][v] = _mm512_fmadd_ps(kv[j], qv, acc[j][v]);
        }
      }
#pragma GCC unroll 32
      for (int j = 0; j < KR; ++j) {
#pragma GCC unroll 32
        for (int v = 0; v < RV; ++v) {
          _mm512_store_ps(it.tile + ((i % kStatsChunk) + j) * rp + 16 * v, acc[j][v]);
        }
      }
      // Fold each full tile of kStatsChunk keys (and the block's last, partial one).
      const int done = i + KR;
      if (done % kStatsChunk == 0 || done >= nk) {
        const int c0 = (done - 1) / kStatsChunk * kStatsChunk;
        tile_stats<RV>(it, it.tile, u0 + c0, min_int(done, nk) - c0, bmax, bsum);
      }
    }
    stats_end(it, bmax);
  }
}

template <typename KT>
void stats_dispatch(const StatsItem& it) {
  switch (it.rows_pad) {
    case 16: return stats_item<1, KT>(it);
    case 32: return stats_item<2, KT>(it);
    case 64: return stats_item<4, KT>(it);
    default: return stats_item<8, KT>(it);
  }
}

}  // namespace

void logit_stats_avx512_fp32(const StatsItem& it) {
  if (it.k_bf16) return stats_dispatch<std::uint16_t>(it);
  return stats_dispatch<float>(it);
}

}  // namespace proxyattn::cpu::kernels

namespace proxyattn::cpu::kernels {

void pool_rows_avx512(const void* src, bool bf16, std::int64_t stride, int heads, int d, float inv,
                      float* dst) {
  const __m512 vinv = _mm512_set1_ps(inv);
  for (int c = 0; c < d; c += 16) {
    const __mmask16 k = prefix_mask(d - c);
    __m512 sum = _mm512_setzero_ps();
    for (int h = 0; h < heads; ++h) {
      __m512 x;
      if (bf16) {
        const auto* row = static_cast<const std::uint16_t*>(src) + h * stride + c;
        const __m256i w = _mm256_maskz_loadu_epi16(k, row);
        x = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(w), 16));
      } else {
        x = _mm512_maskz_loadu_ps(k, static_cast<const float*>(src) + h * stride + c);
      }
      sum = _mm512_add_ps(sum, x);
    }
    __m512 y = _mm512_mul_ps(sum, vinv);
    if (bf16) {  // round to nearest even bf16, NaN stays NaN (quiet bit set)
      const __m512i u = _mm512_castps_si512(y);
      const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
      __m512i r = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
      const __mmask16 nan = _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q);
      r = _mm512_mask_or_epi32(r, nan, u, _mm512_set1_epi32(0x00400000));
      y = _mm512_castsi512_ps(_mm512_and_si512(r, _mm512_set1_epi32(static_cast<int>(0xffff0000u))));
    }
    _mm512_mask_storeu_ps(dst + c, k, y);
  }
}

}  // namespace proxyattn::cpu::kernels

namespace proxyattn::cpu::kernels {

void pack_bf16_pairs_avx512(int b, int d, int dp, const std::uint16_t* k, std::int64_t k_stride,
                            const std::uint16_t* v, std::int64_t v_stride, int cols,
                            std::uint16_t* k_dst, std::uint16_t* v_dst) {
  // K [d/2][b][2]: 16 keys of one d-pair per gather (indices in bf16 elements, scale 2).
  const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
  for (int t0 = 0; t0 < cols; t0 += 16) {
    const __mmask16 live = prefix_mask(cols - t0);
    const __m512i rows = _mm512_mullo_epi32(_mm512_add_epi32(lane, _mm512_set1_epi32(t0)),
                                            _mm512_set1_epi32(static_cast<int>(k_stride)));
    for (int p = 0; p < d / 2; ++p) {
      const __m512i idx = _mm512_add_epi32(rows, _mm512_set1_epi32(2 * p));
      const __m512i w = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, idx, k, 2);
      _mm512_store_si512(k_dst + (static_cast<std::size_t>(p) * b + t0) * 2, w);
    }
  }
  // V [b/2][dp][2]: rows t and t + 1 interleaved by 16-bit permutes.
  const __m512i lo_idx = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9,
                                          40, 8, 39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1,
                                          32, 0);
  const __m512i hi_idx = _mm512_add_epi16(lo_idx, _mm512_set1_epi16(16));
  for (int t = 0; t < cols; t += 2) {
    const std::uint16_t* r0 = v + t * v_stride;
    const std::uint16_t* r1 = t + 1 < cols ? v + (t + 1) * v_stride : nullptr;
    std::uint16_t* dst = v_dst + static_cast<std::size_t>(t / 2) * dp * 2;
    for (int c = 0; c < d; c += 32) {
      const __mmask32 k = _cvtu32_mask32(d - c >= 32 ? 0xFFFFFFFFu : (1u << (d - c)) - 1u);
      const __m512i a = _mm512_maskz_loadu_epi16(k, r0 + c);
      const __m512i b1 = r1 != nullptr ? _mm512_maskz_loadu_epi16(k, r1 + c) : _mm512_setzero_si512();
      _mm512_store_si512(dst + 2 * c, _mm512_permutex2var_epi16(a, lo_idx, b1));
      if (c + 16 < dp) _mm512_store_si512(dst + 2 * c + 32, _mm512_permutex2var_epi16(a, hi_idx, b1));
    }
  }
}

}  // namespace proxyattn::cpu::kernels
