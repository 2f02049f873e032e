// src/cpu/estimate.cc: stages 2-4 on the CPU. Proxy heads, strided proxy logits, and the
// log-space max-pooled block scores S, one query block per work item; nothing N x N.
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

void pool_proxy(const Problem& p, const Config& c, const Sequence& s, float* proxy_q,
                float* proxy_k, int threads) {
  const std::int64_t g = c.num_proxy_heads, D = p.shape.head_dim;
  const std::int64_t samples = (s.n_tokens + c.stride - 1) / c.stride;
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
        for (std::int64_t d = 0; d < D; ++d) {
          float sum = 0.0f;  // fp32, heads in increasing index
          for (std::int64_t h = j * per_group; h < (j + 1) * per_group; ++h) {
            sum += load_float(base, p.dtype, t * stride_n + h * stride_h + d);
          }
          dst[j * D + d] = round_to(p.dtype, sum * inv);
        }
      }
    }
  });
}

void block_scores_stage(const Problem& p, const Config& c, const Sequence& s, const float* proxy_q,
                  const float* proxy_k, float* scores, int threads) {
  const std::int64_t g = c.num_proxy_heads, D = p.shape.head_dim, nb = s.num_blocks;
  const std::int64_t per_block = c.block_size / c.stride;  // samples per block
  const std::int64_t samples = (s.n_tokens + c.stride - 1) / c.stride;
  const std::int64_t tri = nb * (nb + 1) / 2;
  const float kNegInf = -std::numeric_limits<float>::infinity();
  parallel_for(g * nb, threads, [&](std::int64_t item) {
    const std::int64_t j = item / nb, m = item % nb;
    float* S = scores + j * tri + m * (m + 1) / 2;  // [m + 1]
    for (std::int64_t n = 0; n <= m; ++n) S[n] = kNegInf;
    std::vector<float> logits(samples);
    const std::int64_t first = m * per_block;
    const std::int64_t last = std::min(samples, first + per_block);
    for (std::int64_t i = first; i < last; ++i) {
      // Stage 3: L[t, u] = scale * <Qp[t], Kp[u]> for sampled u <= t, and lse[t].
      const float* q = proxy_q + (i * g + j) * D;
      float mx = kNegInf;
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
  });
}

}  // namespace proxyattn::cpu
