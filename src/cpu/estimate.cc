// src/cpu/estimate.cc: stages 2-4 on the CPU. Proxy heads, strided proxy logits, and the
// log-space max-pooled block scores S, one query block per work item; nothing N x N.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/kernels/buffer.h"
#include "cpu/kernels/kernels.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

void pool_proxy(const Problem& p, const Config& c, const Sequence& s, float* proxy_q,
                float* proxy_k, int threads) {
  const std::int64_t g = c.num_proxy_heads, D = p.shape.head_dim;
  const std::int64_t samples = (s.n_tokens + c.stride - 1) / c.stride;
  const kernels::PoolFn pool = kernels::pool_kernel(kernels::active_isa());
  parallel_for(samples, threads, [&](std::int64_t i) {
    const std::int64_t t = s.start + i * c.stride;
    for (int which = 0; which < 2; ++which) {
      const bool query = which == 0;
      const std::int64_t heads = query ? p.shape.num_qo_heads : p.shape.num_kv_heads;
      const std::int64_t per_group = heads / g;
      const float inv = 1.0f / static_cast<float>(per_group);
      const void* base = query ? p.q : p.k;
      const std::int64_t stride_n = query ? p.q_stride_n : p.k_stride_n;
      const std::int64_t stride_h = query ? p.q_stride_h : p.k_stride_h;
      float* dst = (query ? proxy_q : proxy_k) + i * g * D;  // [g, head_dim]
      for (std::int64_t j = 0; j < g; ++j) {
        if (pool != nullptr && p.dtype != DType::kFloat16) {
          const std::int64_t row = t * stride_n + j * per_group * stride_h;
          const void* src = static_cast<const char*>(base) + row * dtype_size(p.dtype);
          pool(src, p.dtype == DType::kBFloat16, stride_h, static_cast<int>(per_group),
               static_cast<int>(D), inv, dst + j * D);
          continue;
        }
        float* sum = dst + j * D;  // fp32, heads in increasing index
        std::fill(sum, sum + D, 0.0f);
        for (std::int64_t h = j * per_group; h < (j + 1) * per_group; ++h) {
          const std::int64_t row = t * stride_n + h * stride_h;
          if (p.dtype == DType::kBFloat16) {
            const auto* x = static_cast<const std::uint16_t*>(base) + row;
            for (std::int64_t d = 0; d < D; ++d) sum[d] += bf16_to_float(x[d]);
          } else if (p.dtype == DType::kFloat32) {
            const auto* x = static_cast<const float*>(base) + row;
            for (std::int64_t d = 0; d < D; ++d) sum[d] += x[d];
          } else {
            for (std::int64_t d = 0; d < D; ++d) sum[d] += load_float(base, p.dtype, row + d);
          }
        }
        for (std::int64_t d = 0; d < D; ++d) sum[d] = round_to(p.dtype, sum[d] * inv);
      }
    }
  });
}

namespace {

// Stages 3-4 for query block m of group j by the plain loops.
void block_scores_scalar(const Problem& p, std::int64_t g, std::int64_t per_block,
                         std::int64_t samples, std::int64_t j, std::int64_t m, const float* proxy_q,
                         const float* proxy_k, float* S) {
  const std::int64_t D = p.shape.head_dim;
  std::vector<float> logits(samples);
  const std::int64_t first = m * per_block;
  const std::int64_t last = std::min(samples, first + per_block);
  for (std::int64_t i = first; i < last; ++i) {
    // Stage 3: L[t, u] = scale * <Qp[t], Kp[u]> for sampled u <= t, and lse[t].
    const float* q = proxy_q + (i * g + j) * D;
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t u = 0; u <= i; ++u) {
      logits[u] = p.scale * dot(q, proxy_k + (u * g + j) * D, D);
      mx = nan_max(mx, logits[u]);
    }
    double sum = 0.0;
    for (std::int64_t u = 0; u <= i; ++u) sum += std::exp(static_cast<double>(logits[u] - mx));
    const float lse = mx + static_cast<float>(std::log(sum));
    // Stage 4: S[m, n] = max over the row's samples in key block n of L[t, u] - lse[t].
    for (std::int64_t u = 0; u <= i; ++u) S[u / per_block] = nan_max(S[u / per_block], logits[u] - lse);
  }
}

// The same through the logit-statistics micro-kernel: per (sample row, key block) the logit max
// and the sum of exp below it; lse per row from those in double; S[n] = max over rows of
// (block max - lse).
void block_scores_simd(const Problem& p, std::int64_t g, std::int64_t per_block,
                       std::int64_t samples, std::int64_t j, std::int64_t m, const float* proxy_q,
                       const float* proxy_k, float* S, kernels::StatsFn stats) {
  const std::int64_t D = p.shape.head_dim;
  const std::int64_t first = m * per_block;
  const std::int64_t rows = std::min(samples, first + per_block) - first;
  std::int64_t rp = 16;  // lanes: 16, 32, 64 or 128
  while (rp < rows) rp *= 2;
  const std::int64_t nkb = m + 1;  // key blocks 0..m
  kernels::AlignedArray<float> qp(D * rp), bmax(nkb * rp), bsum(nkb * rp), tile((per_block + 32) * rp);
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* q = proxy_q + ((first + r) * g + j) * D;
    for (std::int64_t c = 0; c < D; ++c) qp[c * rp + r] = q[c];
  }
  kernels::StatsItem it;
  it.rows = static_cast<int>(rows);
  it.rows_pad = static_cast<int>(rp);
  it.head_dim = static_cast<int>(D);
  it.scale = p.scale;
  it.row0 = first;
  it.q_packed = qp.data();
  it.k = proxy_k + j * D;
  it.k_stride = g * D;
  it.k_bf16 = false;
  it.n_keys = std::min(samples, first + rows);
  it.key_block = static_cast<int>(per_block);
  it.bmax = bmax.data();
  it.bsum = bsum.data();
  it.tile = tile.data();
  stats(it);
  const float kNegInf = -std::numeric_limits<float>::infinity();
  for (std::int64_t r = 0; r < rows; ++r) {
    float mx = kNegInf;
    for (std::int64_t n = 0; n < nkb; ++n) mx = nan_max(mx, bmax[n * rp + r]);
    double sum = 0.0;
    for (std::int64_t n = 0; n < nkb; ++n) {
      const float bm = bmax[n * rp + r];
      if (bm == kNegInf) continue;
      sum += static_cast<double>(bsum[n * rp + r]) * std::exp(static_cast<double>(bm - mx));
    }
    const float lse = mx + static_cast<float>(std::log(sum));
    for (std::int64_t n = 0; n < nkb; ++n) {
      const float bm = bmax[n * rp + r];
      if (bm != kNegInf) S[n] = nan_max(S[n], bm - lse);
    }
  }
}

}  // namespace

void block_scores_stage(const Problem& p, const Config& c, const Sequence& s, const float* proxy_q,
                  const float* proxy_k, float* scores, int threads) {
  const std::int64_t g = c.num_proxy_heads, nb = s.num_blocks;
  const std::int64_t per_block = c.block_size / c.stride;  // samples per block
  const std::int64_t samples = (s.n_tokens + c.stride - 1) / c.stride;
  const std::int64_t tri = nb * (nb + 1) / 2;
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const kernels::StatsFn stats = kernels::stats_kernel(kernels::active_isa(), false);
  parallel_for(g * nb, threads, [&](std::int64_t item) {
    const std::int64_t j = item / nb, m = item % nb;
    float* S = scores + j * tri + m * (m + 1) / 2;  // [m + 1]
    for (std::int64_t n = 0; n <= m; ++n) S[n] = kNegInf;
    if (stats != nullptr && per_block <= 128) {
      block_scores_simd(p, g, per_block, samples, j, m, proxy_q, proxy_k, S, stats);
    } else {
      block_scores_scalar(p, g, per_block, samples, j, m, proxy_q, proxy_k, S);
    }
  });
}

}  // namespace proxyattn::cpu
