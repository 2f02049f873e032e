// src/cpu/kernels/avx512_common.h: AVX-512 helpers shared by the AVX-512 kernel translation units
// only (never include from a baseline unit). Everything has internal linkage (anonymous
// namespace), so no AVX-512 copy of an inline function can leak to baseline code.
#pragma once

// GCC 12 reports its own _mm512_undefined_* placeholders inside the intrinsics as uninitialized
// (clang has no -Wmaybe-uninitialized and would warn about the pragma itself).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

#include <immintrin.h>

#include <math.h>
#include <cstdint>
#include <cstring>
#include <limits>
#include <time.h>

#include "cpu/kernels/kernels.h"

namespace proxyattn::cpu::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 2^x for x <= 0 (larger x is fine up to 127); NaN stays NaN. x is clamped at -125 so the smallest result is
// the normal 2^-125 (never a denormal, never NaN from -inf); n = round(x), f = x - n in
// [-0.5, 0.5], 2^f by a degree-5 Taylor polynomial (max relative error ~3e-6, below bf16's 2^-9),
// then scaled by 2^n with vscalefps. Callers zero masked lanes themselves.
inline __m512 exp2_ps(__m512 x) {
  x = _mm512_max_ps(_mm512_set1_ps(-125.0f), x);  // a NaN x is the second operand: kept
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);
  __m512 p = _mm512_set1_ps(1.3333558146e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108665e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650696e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718056e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// P.V accumulator rows in registers: o[r][c] = acc row r's zmm column c0 + c (c < cw) times
// alpha[r], or zeros where alpha[r] is 0 (the row's first keys: acc is not read, since it is not
// zeroed per work item).
template <int R, int W>
inline __attribute__((always_inline)) void load_scaled_rows(__m512 (&o)[R][W],
                                                            float* const* acc, const float* alpha,
                                                            int c0, int cw) {
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) {
    const bool fresh = alpha[r] == 0.0f;
    const __m512 va = _mm512_set1_ps(alpha[r]);
#pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) {
        o[r][c] = fresh ? _mm512_setzero_ps()
                        : _mm512_mul_ps(_mm512_load_ps(acc[r] + 16 * (c0 + c)), va);
      }
    }
  }
}

// The rows back: acc row r's zmm column c0 + c = o[r][c] for c < cw.
template <int R, int W>
inline __attribute__((always_inline)) void store_rows(const __m512 (&o)[R][W], float* const* acc,
                                                      int c0, int cw) {
#pragma GCC unroll 32
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) _mm512_store_ps(acc[r] + 16 * (c0 + c), o[r][c]);
    }
  }
}

// Lanes [0, n) of a 16-lane vector, n clamped to [0, 16].
inline __mmask16 prefix_mask(int n) {
  const unsigned bits = n <= 0 ? 0u : n >= 16 ? 0xFFFFu : (1u << n) - 1u;
  return _cvtu32_mask16(bits);  // kmovw (GCC 12 may otherwise pick kmovb for 0/-1 values)
}

inline int min_int(int a, int b) { return a < b ? a : b; }
inline std::int64_t min_i64(std::int64_t a, std::int64_t b) { return a < b ? a : b; }
inline std::int64_t max_i64(std::int64_t a, std::int64_t b) { return a > b ? a : b; }

inline float bf16_bits_to_float(std::uint16_t bits) {
  const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// Round to nearest even, NaN stays NaN (as the library's float_to_bf16).
inline std::uint16_t float_to_bf16_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>((u + rounding) >> 16);
}

// Round to nearest even bf16 (as float_to_bf16_bits, NaN kept quiet), the 16-bit result in the
// low half of each 32-bit lane (AVX-512F integer ops only).
inline __m512i to_bf16_bits(__m512 y) {
  const __m512i u = _mm512_castps_si512(y);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  const __m512i rounded = _mm512_add_epi32(u, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), lsb));
  const __mmask16 nan = _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q);
  const __m512i r = _mm512_mask_or_epi32(rounded, nan, u, _mm512_set1_epi32(0x00400000));
  return _mm512_srli_epi32(r, 16);
}

// Key validity of one query row (token t) against key block [k0, k0 + cols): keys k0..t (causal)
// and below cols.
inline int valid_keys(std::int64_t t, std::int64_t k0, int cols) {
  const std::int64_t causal = t - k0 + 1;
  return static_cast<int>(max_i64(0, min_i64(causal, cols)));
}

// Softmax state of one row after a block: running max m (log2 units, scale folded in), alpha
// = 2^(m_old - m_new) (0 when m_old was -inf), m updated in place. Returns false when the row has
// no finite max yet (nothing to add). The block max is NaN-sticky only through the lanes that
// vmaxps keeps (a NaN in the second operand); any NaN score also turns its p, hence l, into NaN.
inline bool update_max(float* m, float block_max_scaled, float* alpha) {
  const float m_old = *m;
  if (block_max_scaled != block_max_scaled) {  // a NaN score: the row becomes NaN, as dense does
    *m = block_max_scaled;
    *alpha = block_max_scaled;
    return true;
  }
  const float m_new = block_max_scaled > m_old ? block_max_scaled : m_old;  // NaN keeps m_old
  if (m_new == kNegInf) {
    *alpha = 1.0f;
    return false;
  }
  *alpha = m_old == kNegInf ? 0.0f : exp2f(m_old - m_new);
  *m = m_new;
  return true;
}

// Writes the epilogue of one row: O = acc / l (D elements, bf16 or fp32), LSE = m ln2 + ln l;
// a row that attended nothing gets O = 0 and LSE = -inf.
inline void store_row(const float* acc, float m, float l, int d, bool bf16, void* o, float* lse) {
  const bool empty = m == kNegInf;  // acc was never written: not read
  const float inv = empty ? 0.0f : 1.0f / l;
  if (bf16) {
    auto* out = static_cast<std::uint16_t*>(o);
    const __m512 vinv = _mm512_set1_ps(inv);
    for (int c = 0; c < d; c += 16) {
      const __mmask16 k = prefix_mask(d - c);
      const __m512 y = empty ? _mm512_setzero_ps()
                             : _mm512_mul_ps(_mm512_maskz_loadu_ps(k, acc + c), vinv);
      _mm256_mask_storeu_epi16(out + c, k, _mm512_cvtepi32_epi16(to_bf16_bits(y)));
    }
  } else {
    auto* out = static_cast<float*>(o);
    int c = 0;
    const __m512 vinv = _mm512_set1_ps(inv);
    for (; c < d; c += 16) {
      const __mmask16 k = prefix_mask(d - c);
      const __m512 y = empty ? _mm512_setzero_ps()
                             : _mm512_mul_ps(_mm512_maskz_loadu_ps(k, acc + c), vinv);
      _mm512_mask_storeu_ps(out + c, k, y);
    }
  }
  if (lse != nullptr) *lse = empty ? kNegInf : m * kLn2 + logf(l);
}

// Seconds of CPU time of the calling thread (clock_gettime: no inline library templates in ISA
// units). The peak loops divide by this, so a machine shared with other work does not lower the
// measured peak (on an idle machine it equals wall time).
inline double now_seconds() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// Keeps a benchmark result alive.
inline void sink_float(float x) {
  static volatile float sink;
  sink = x;
  (void)sink;
}

}  // namespace
}  // namespace proxyattn::cpu::kernels

namespace proxyattn::cpu::kernels {
namespace {

// Keys per logit tile of the statistics kernels: a multiple of every keys-per-step count (2, 6,
// 12, 24), and small enough that the tile (kStatsChunk x 128 rows x 4 bytes = 12 KB) and the
// packed Q rows (32 KB at head_dim 128) stay in L1 together.
constexpr int kStatsChunk = 24;

// How many keys ahead the statistics kernels prefetch K rows.
constexpr int kPrefetchKeys = 8;

// Second half of the logit statistics (kernels.h, StatsItem): folds one tile of logits
// [nk][rows_pad] (raw dot products, keys u0..u0+nk-1) into the running per-row max m (raw dot
// units) and sum s of exp(scale * (x - m)) of the current key block, over visible lanes only.
template <int RV>
inline void tile_stats(const StatsItem& it, const float* tile, std::int64_t u0, int nk, float* m,
                       float* s) {
  const __m512 vc = _mm512_set1_ps(it.scale * kLog2e);
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
#pragma GCC unroll 8
  for (int v = 0; v < RV; ++v) {
    const __mmask16 live = prefix_mask(it.rows - 16 * v);
    // Row r = 16 v + lane sees key u0 + i iff lane >= u0 + i - row0 - 16 v; when the tile's last
    // key is visible to lane 0 every live lane sees the whole tile.
    const bool whole = u0 + nk - 1 - it.row0 - 16 * v <= 0;
    auto visible = [&](int i) -> __mmask16 {
      if (whole) return live;
      const std::int64_t thr = u0 + i - it.row0 - 16 * v;
      return static_cast<__mmask16>(
          live & ~prefix_mask(static_cast<int>(max_i64(-1, min_i64(thr, 16)))));
    };
    __m512 mx = neg_inf;
    for (int i = 0; i < nk; ++i) {
      mx = _mm512_mask_max_ps(mx, visible(i), mx, _mm512_load_ps(tile + i * it.rows_pad + 16 * v));
    }
    const __m512 m_old = _mm512_load_ps(m + 16 * v);
    const __m512 m_new = _mm512_max_ps(m_old, mx);  // a NaN in mx is kept (second operand)
    // Lanes that have seen no key yet keep -inf and 0 (and never compute -inf - -inf).
    const __mmask16 any = _mm512_cmp_ps_mask(m_new, neg_inf, _CMP_NEQ_UQ);
    const __m512 m2 = _mm512_maskz_mul_ps(any, m_new, vc);
    const __m512 alpha = _mm512_mask_blend_ps(
        any, _mm512_set1_ps(1.0f), exp2_ps(_mm512_fmsub_ps(m_old, vc, m2)));
    __m512 sum = _mm512_setzero_ps();
    for (int i = 0; i < nk; ++i) {
      const __m512 x = _mm512_fmsub_ps(_mm512_load_ps(tile + i * it.rows_pad + 16 * v), vc, m2);
      sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(visible(i), exp2_ps(x)));
    }
    _mm512_store_ps(m + 16 * v, m_new);
    _mm512_store_ps(s + 16 * v, _mm512_fmadd_ps(_mm512_load_ps(s + 16 * v), alpha, sum));
  }
}

// Starts a key block's running max and sum.
inline void stats_begin(int rows_pad, float* m, float* s) {
  for (int r = 0; r < rows_pad; r += 16) {
    _mm512_store_ps(m + r, _mm512_set1_ps(kNegInf));
    _mm512_store_ps(s + r, _mm512_setzero_ps());
  }
}

// Ends a key block: the max in natural-log units (scale * x), -inf where nothing was seen.
inline void stats_end(const StatsItem& it, float* m) {
  for (int r = 0; r < it.rows_pad; r += 16) {
    const __m512 x = _mm512_load_ps(m + r);
    const __mmask16 any = _mm512_cmp_ps_mask(x, _mm512_set1_ps(kNegInf), _CMP_NEQ_UQ);
    _mm512_store_ps(m + r, _mm512_mask_blend_ps(any, x, _mm512_mul_ps(x, _mm512_set1_ps(it.scale))));
  }
}

}  // namespace
}  // namespace proxyattn::cpu::kernels
