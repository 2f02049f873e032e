// src/cpu/kernels/attend_avx512bf16.cc: bf16 flash attention with vdpbf16ps (AVX512-BF16).
// Compiled with -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16; reached only through
// kernels::attend_kernel() when the processor has AVX512-BF16.
//
// Per (head, query block) item, key blocks in ascending order; per key block, strips of R query
// rows (R = 3 for 128-key blocks, 6 for 64-key blocks, so S holds R x NKV = 24 zmm accumulators):
//   S[r][16 keys] += bcast(Q[r][2p, 2p+1]) . Kp[p][16 keys][2]   (vdpbf16ps, m32 broadcast)
//   online softmax in base 2 with the scale folded in (one FMA per score + vector exp2)
//   P rounded to bf16 pairs (vcvtne2ps2bf16), O[r][16 dims] += bcast(P[r][2j, 2j+1]) . Vp[j][16][2]
// Only blocks where some row of the strip sees fewer than b keys (the diagonal, the sequence's
// last partial block) are masked; there each row's PV stops at its last key, so a NaN in a key
// the row cannot see never reaches it.
#include "cpu/kernels/avx512_common.h"

namespace proxyattn::cpu::kernels {
namespace {

inline __m512bh bcast_pair(const std::uint16_t* p) {
  std::int32_t w;
  std::memcpy(&w, p, sizeof(w));
  return (__m512bh)_mm512_set1_epi32(w);
}

// O rows (W zmm columns starting at column c0, cw of them valid) += P rows . V pairs [0, pairs).
// O rows are first scaled by alpha (the online-softmax correction).
template <int R, int W>
inline void pv_chunk(float* const* acc, const float* alpha, const std::uint16_t* const* prow,
                     const std::uint16_t* vp, int dp, int c0, int cw, int pairs, bool last_half) {
  __m512 o[R][W];
  load_scaled_rows<R, W>(o, acc, alpha, c0, cw);
  for (int j = 0; j < pairs; ++j) {
    __m512bh pb[R];
    #pragma GCC unroll 32
    for (int r = 0; r < R; ++r) pb[r] = bcast_pair(prow[r] + 2 * j);
    const std::uint16_t* v = vp + (static_cast<std::size_t>(j) * dp + 16 * c0) * 2;
    #pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) {
        const __m512bh vv = (__m512bh)_mm512_load_si512(v + 32 * c);
        #pragma GCC unroll 32
        for (int r = 0; r < R; ++r) o[r][c] = _mm512_dpbf16_ps(o[r][c], pb[r], vv);
      }
    }
  }
  if (last_half) {  // R == 1: key 2 * pairs only; its pair partner is masked (V half zeroed)
    const __m512bh pb = bcast_pair(prow[0] + 2 * pairs);
    const std::uint16_t* v = vp + (static_cast<std::size_t>(pairs) * dp + 16 * c0) * 2;
    const __m512i lo = _mm512_set1_epi32(0xFFFF);
    #pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) {
        const __m512i vv = _mm512_and_si512(_mm512_load_si512(v + 32 * c), lo);
        o[0][c] = _mm512_dpbf16_ps(o[0][c], pb, (__m512bh)vv);
      }
    }
  }
  store_rows<R, W>(o, acc, c0, cw);
}

// Masked blocks: O rows = O * alpha + P V over each row's own full key pairs [0, pairs[r]) (merge-
// masked vdpbf16ps, so keys a row cannot see are never multiplied in); odd tails come after.
template <int R, int W>
inline void pv_chunk_masked(float* const* acc, const float* alpha, const std::uint16_t* const* prow,
                            const std::uint16_t* vp, int dp, int c0, int cw, const int* pairs,
                            int max_pairs) {
  __m512 o[R][W];
  load_scaled_rows<R, W>(o, acc, alpha, c0, cw);
  for (int j = 0; j < max_pairs; ++j) {
    __m512bh pb[R];
    __mmask16 live[R];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) {
      pb[r] = bcast_pair(prow[r] + 2 * j);
      // A vector compare, not (cond ? 0xFFFF : 0): GCC 12 materializes that 0/-1 value and
      // moves it into the mask register with kmovb, which sets only lanes 0-7.
      live[r] = _mm512_cmplt_epi32_mask(_mm512_set1_epi32(j), _mm512_set1_epi32(pairs[r]));
    }
    const std::uint16_t* v = vp + (static_cast<std::size_t>(j) * dp + 16 * c0) * 2;
#pragma GCC unroll 32
    for (int c = 0; c < W; ++c) {
      if (c < cw) {
        const __m512bh vv = (__m512bh)_mm512_load_si512(v + 32 * c);
#pragma GCC unroll 32
        for (int r = 0; r < R; ++r) o[r][c] = _mm512_mask_dpbf16_ps(o[r][c], live[r], pb[r], vv);
      }
    }
  }
  store_rows<R, W>(o, acc, c0, cw);
}

// S[r][j] += Q[r] . K over the strip; masked blocks skip key vectors j >= nvec (keys no row of
// the strip can see: their scores stay 0 and are masked by the softmax).
template <int R, int NKV, bool kMasked>
inline void qk_strip(__m512 (&s)[R][NKV], const std::uint16_t* const* qrow,
                     const std::uint16_t* kp, int d, int nvec) {
  constexpr int kB = 16 * NKV;
  for (int p = 0; p < d / 2; ++p) {
    __m512bh qb[R];
#pragma GCC unroll 32
    for (int r = 0; r < R; ++r) qb[r] = bcast_pair(qrow[r] + 2 * p);
    const std::uint16_t* kpp = kp + static_cast<std::size_t>(p) * kB * 2;
#pragma GCC unroll 32
    for (int j = 0; j < NKV; ++j) {
      if (kMasked && j >= nvec) continue;
      const __m512bh kv = (__m512bh)_mm512_load_si512(kpp + 32 * j);
#pragma GCC unroll 32
      for (int r = 0; r < R; ++r) s[r][j] = _mm512_dpbf16_ps(s[r][j], qb[r], kv);
    }
  }
}

template <int R, int NKV, int kD>
void attend_item(const AttendItem& it) {
  constexpr int kB = 16 * NKV;
  constexpr int kW = 24 / R;  // PV column chunk: R x kW accumulators
  const int d = kD != 0 ? kD : it.head_dim;
  const int dp = kD != 0 ? kD : it.padded_dim;
  const int nc = dp / 16;
  const ScratchLayout sl = scratch_layout(kB, d, dp);
  float* acc = it.scratch + sl.acc;  // [b'][dp]
  float* m = it.scratch + sl.m;      // [b']
  float* l = it.scratch + sl.l;      // [b'][16]
  auto* pbuf = reinterpret_cast<std::uint16_t*>(it.scratch + sl.p);  // [R][b] bf16
  const int rows = it.rows;
  const int srows = (rows + R - 1) / R * R;
  for (int r = 0; r < srows; ++r) {
    m[r] = kNegInf;
    _mm512_store_ps(l + 16 * r, _mm512_setzero_ps());
  }
  const auto* q = static_cast<const std::uint16_t*>(it.q);
  const __m512 vc = _mm512_set1_ps(it.scale * kLog2e);
  const std::size_t bytes = it.packed_block_bytes;

  for (int kb = 0; kb < it.num_key_blocks; ++kb) {
    const std::int64_t n = it.key_blocks[kb];
    const std::int64_t k0 = n * kB;
    const int cols = static_cast<int>(min_i64(kB, it.n_tokens - k0));
    const auto* kp = reinterpret_cast<const std::uint16_t*>(
        static_cast<const char*>(it.k_packed) + n * bytes);  // [d/2][b][2]
    const auto* vp = reinterpret_cast<const std::uint16_t*>(
        static_cast<const char*>(it.v_packed) + n * bytes);  // [b/2][dp][2]
    for (int r0 = 0; r0 < rows; r0 += R) {
      int valid[R];
      bool full = true;
      const std::uint16_t* qrow[R];
      #pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        const int row = min_int(r0 + r, rows - 1);
        qrow[r] = q + row * it.q_stride;
        valid[r] = r0 + r < rows ? valid_keys(it.q0 + r0 + r, k0, cols) : 0;
        full = full && valid[r] == kB;
      }
      // S = Q K^T for R rows x b keys.
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
      // Online softmax per row; P to bf16.
      float alpha[R];
      #pragma GCC unroll 32
      for (int r = 0; r < R; ++r) {
        alpha[r] = 1.0f;
        const int row = r0 + r;
        std::uint16_t* prow = pbuf + r * kB;
        if (valid[r] == 0) continue;
        __m512 mx = _mm512_set1_ps(kNegInf);
        #pragma GCC unroll 32
        for (int j = 0; j < NKV; ++j) {
          mx = _mm512_mask_max_ps(mx, prefix_mask(valid[r] - 16 * j), mx, s[r][j]);
        }
        const float block_max = _mm512_reduce_max_ps(mx) * (it.scale * kLog2e);
        if (!update_max(&m[row], block_max, &alpha[r])) {
          valid[r] = 0;  // every visible score is -inf: nothing to add
          continue;
        }
        const __m512 neg_m = _mm512_set1_ps(-m[row]);
        __m512 sum = _mm512_setzero_ps();
        #pragma GCC unroll 32
        for (int j = 0; j < NKV; ++j) {
          __m512 pj = exp2_ps(_mm512_fmadd_ps(s[r][j], vc, neg_m));
          if (!full) pj = _mm512_maskz_mov_ps(prefix_mask(valid[r] - 16 * j), pj);
          s[r][j] = pj;
          sum = _mm512_add_ps(sum, pj);
        }
        float* lr = l + 16 * row;
        _mm512_store_ps(lr, _mm512_fmadd_ps(_mm512_load_ps(lr), _mm512_set1_ps(alpha[r]), sum));
        #pragma GCC unroll 32
        for (int j = 0; j < NKV; j += 2) {
          const __m512bh pair = _mm512_cvtne2ps_pbh(s[r][j + 1], s[r][j]);
          _mm512_store_si512(prow + 16 * j, (__m512i)pair);
        }
      }
      // O = O * alpha + P V.
      if (full) {
        float* arow[R];
        const std::uint16_t* prow[R];
        #pragma GCC unroll 32
        for (int r = 0; r < R; ++r) {
          arow[r] = acc + (r0 + r) * dp;
          prow[r] = pbuf + r * kB;
        }
        for (int c0 = 0; c0 < nc; c0 += kW) {
          pv_chunk<R, kW>(arow, alpha, prow, vp, dp, c0, min_int(kW, nc - c0), kB / 2, false);
        }
      } else {
        float* arow[R];
        const std::uint16_t* prow[R];
        int pairs[R];
        int max_pairs = 0;
        for (int r = 0; r < R; ++r) {
          arow[r] = acc + (r0 + r) * dp;
          prow[r] = pbuf + r * kB;
          pairs[r] = valid[r] / 2;
          max_pairs = pairs[r] > max_pairs ? pairs[r] : max_pairs;
        }
        for (int c0 = 0; c0 < nc; c0 += kW) {
          pv_chunk_masked<R, kW>(arow, alpha, prow, vp, dp, c0, min_int(kW, nc - c0), pairs,
                                 max_pairs);
        }
        // A row with an odd key count: its last key, with the pair partner's V half zeroed.
        const float one = 1.0f;
        for (int r = 0; r < R; ++r) {
          if ((valid[r] & 1) == 0) continue;
          const std::uint16_t* ptail[1] = {prow[r] + 2 * pairs[r]};
          const std::uint16_t* vtail = vp + static_cast<std::size_t>(pairs[r]) * dp * 2;
          for (int c0 = 0; c0 < nc; c0 += 8) {
            pv_chunk<1, 8>(&arow[r], &one, ptail, vtail, dp, c0, min_int(8, nc - c0), 0, true);
          }
        }
      }
    }
  }
  // Epilogue.
  const bool bf16_out = it.bf16;
  for (int r = 0; r < rows; ++r) {
    const float lsum = _mm512_reduce_add_ps(_mm512_load_ps(l + 16 * r));
    auto* o = static_cast<std::uint16_t*>(it.o) + static_cast<std::int64_t>(r) * it.o_stride;
    store_row(acc + r * dp, m[r], lsum, d, bf16_out, o, it.lse != nullptr ? it.lse + r : nullptr);
  }
}

}  // namespace

void attend_avx512bf16(const AttendItem& it) {
  const bool b128 = it.block == 128;
  switch (it.head_dim) {
    case 64: return b128 ? attend_item<3, 8, 64>(it) : attend_item<6, 4, 64>(it);
    case 128: return b128 ? attend_item<3, 8, 128>(it) : attend_item<6, 4, 128>(it);
    default: return b128 ? attend_item<3, 8, 0>(it) : attend_item<6, 4, 0>(it);
  }
}

}  // namespace proxyattn::cpu::kernels

namespace proxyattn::cpu::kernels {

double peak_avx512bf16_loop(double seconds) {
  // 24 independent accumulators (>= latency x throughput on Zen 4/5 and Sapphire Rapids), kept in
  // registers: no memory clobbers inside the loop (they would force the accumulators to memory).
  __m512 acc[24];
  #pragma GCC unroll 32
  for (int i = 0; i < 24; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i) * 1e-3f);
  __m512bh a = (__m512bh)_mm512_set1_epi32(0x3f803f80);  // (1, 1)
  __m512bh b = (__m512bh)_mm512_set1_epi32(0x35803580);  // 2^-20: no overflow over many steps
  __asm__("" : "+v"(a), "+v"(b));  // opaque operands
  const std::int64_t per_round = 1 << 16;
  std::int64_t rounds = 0;
  const double t0 = now_seconds();
  double t = t0;
  do {
    for (std::int64_t i = 0; i < per_round; ++i) {
      #pragma GCC unroll 32
      for (int k = 0; k < 24; ++k) acc[k] = _mm512_dpbf16_ps(acc[k], a, b);
    }
    ++rounds;
    t = now_seconds();
  } while (t - t0 < seconds);
  __m512 total = acc[0];
  #pragma GCC unroll 32
  for (int i = 1; i < 24; ++i) total = _mm512_add_ps(total, acc[i]);
  sink_float(_mm512_reduce_add_ps(total));
  return static_cast<double>(rounds) * per_round * 24 * 64 / (t - t0) * 1e-9;
}

}  // namespace proxyattn::cpu::kernels

namespace proxyattn::cpu::kernels {
namespace {

// Logit tiles by vdpbf16ps: S^T[key][16 rows] += bcast(K[key][2p, 2p+1]) . Qp[p][16 rows][2].
template <int RV>
void stats_item(const StatsItem& it) {
  // Keys per step: 24 accumulators with the row vectors in registers (RV < 4), else 16 with KR
  // broadcasts and one Q vector at a time (more spills under GCC 12).
  constexpr int KR = RV < 4 ? 24 / RV : 16 / RV;
  const int d = it.head_dim, rp = it.rows_pad;
  const auto* qp = static_cast<const std::uint16_t*>(it.q_packed);  // [d/2][rp][2]
  const auto* k = static_cast<const std::uint16_t*>(it.k);
  const std::int64_t last = min_i64(it.n_keys, it.row0 + it.rows);
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
      const std::uint16_t* krow[KR];
#pragma GCC unroll 32
      for (int j = 0; j < KR; ++j) krow[j] = k + min_i64(u0 + i + j, last - 1) * it.k_stride;
      // K rows are read in place (strided, from L3 or memory): fetch those of a later step now.
      for (int j = 0; j < KR; ++j) {
        const char* ahead = reinterpret_cast<const char*>(
            k + min_i64(u0 + i + j + kPrefetchKeys, last - 1) * it.k_stride);
        for (int byte = 0; byte < d * 2; byte += 64) _mm_prefetch(ahead + byte, _MM_HINT_T0);
      }
      __m512 acc[KR][RV];
#pragma GCC unroll 32
      for (int j = 0; j < KR; ++j) {
#pragma GCC unroll 32
        for (int v = 0; v < RV; ++v) acc[j][v] = _mm512_setzero_ps();
      }
      for (int p = 0; p < d / 2; ++p) {
        if constexpr (RV < 4) {  // few row vectors: keep them in registers, one key at a time
          __m512bh qv[RV];
#pragma GCC unroll 32
          for (int v = 0; v < RV; ++v) {
            qv[v] = (__m512bh)_mm512_load_si512(qp + (static_cast<std::size_t>(p) * rp + 16 * v) * 2);
          }
#pragma GCC unroll 32
          for (int j = 0; j < KR; ++j) {
            const __m512bh kv = bcast_pair(krow[j] + 2 * p);
#pragma GCC unroll 32
            for (int v = 0; v < RV; ++v) acc[j][v] = _mm512_dpbf16_ps(acc[j][v], kv, qv[v]);
          }
          continue;
        }
        // KR key broadcasts, then each Q vector loaded once and used KR times.
        __m512bh kv[KR];
#pragma GCC unroll 32
        for (int j = 0; j < KR; ++j) kv[j] = bcast_pair(krow[j] + 2 * p);
#pragma GCC unroll 32
        for (int v = 0; v < RV; ++v) {
          const __m512bh qv =
              (__m512bh)_mm512_load_si512(qp + (static_cast<std::size_t>(p) * rp + 16 * v) * 2);
#pragma GCC unroll 32
          for (int j = 0; j < KR; ++j) acc[j][v] = _mm512_dpbf16_ps(acc[j][v], kv[j], qv);
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

}  // namespace

void logit_stats_avx512bf16(const StatsItem& it) {
  switch (it.rows_pad) {
    case 16: return stats_item<1>(it);
    case 32: return stats_item<2>(it);
    case 64: return stats_item<4>(it);
    default: return stats_item<8>(it);
  }
}

}  // namespace proxyattn::cpu::kernels
