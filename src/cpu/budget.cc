// src/cpu/budget.cc: stage 5 on the CPU. Each query head's exact attention over its last R rows
// (no pooling, no stride, fp32), the mass a_h per key block, and the budget n_h.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "common/rules.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

void budgets(const Problem& p, const Config& c, const Sequence& s, float* mass,
             std::int32_t* budgets_out, int threads) {
  const std::int64_t H = p.shape.num_qo_heads, D = p.shape.head_dim, nb = s.num_blocks;
  const std::int64_t b = c.block_size, N = s.n_tokens;
  const std::int64_t rows = std::min<std::int64_t>(b, N);  // R: the last b rows, even if N % b != 0
  const std::int64_t first_row = N - rows;
  parallel_for(H, threads, [&](std::int64_t h) {
    const std::int64_t kv = h / p.shape.group_size();
    std::vector<float> q(rows * D), k(D), logits(rows * N);  // q [R, D], logits [R, N]
    for (std::int64_t r = 0; r < rows; ++r) {
      load_row(p.q, p.dtype, (s.start + first_row + r) * p.q_stride_n + h * p.q_stride_h, D, &q[r * D]);
    }
    for (std::int64_t u = 0; u < N; ++u) {
      load_row(p.k, p.dtype, (s.start + u) * p.k_stride_n + kv * p.k_stride_h, D, k.data());
      for (std::int64_t r = std::max<std::int64_t>(0, u - first_row); r < rows; ++r) {
        logits[r * N + u] = p.scale * dot(&q[r * D], k.data(), D);
      }
    }
    std::vector<double> a(nb, 0.0);
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t t = first_row + r;
      const float* row = &logits[r * N];
      float mx = -std::numeric_limits<float>::infinity();
      for (std::int64_t u = 0; u <= t; ++u) mx = nan_max(mx, row[u]);
      double sum = 0.0;
      for (std::int64_t u = 0; u <= t; ++u) sum += std::exp(static_cast<double>(row[u] - mx));
      const double inv = 1.0 / (sum * static_cast<double>(rows));
      for (std::int64_t u = 0; u <= t; ++u) a[u / b] += std::exp(static_cast<double>(row[u] - mx)) * inv;
    }
    float* a_h = mass + h * nb;
    for (std::int64_t n = 0; n < nb; ++n) a_h[n] = static_cast<float>(a[n]);
    // n_h (stage 5's cut) over a_h sorted descending, NaN first so the cut sees it.
    std::vector<double> sorted(a);
    std::sort(sorted.begin(), sorted.end(), rules::nan_first_descending);
    const std::int64_t n_h =
        rules::budget_cut([&](std::int64_t i) { return sorted[i]; }, nb, c.gamma);
    budgets_out[h] = static_cast<std::int32_t>(
        rules::clamp_budget(n_h, c.min_budget_blocks(), c.max_budget_blocks(), nb));
  });
}

}  // namespace proxyattn::cpu
