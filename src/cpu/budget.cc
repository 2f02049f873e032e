// src/cpu/budget.cc: stage 5 on the CPU. Each query head's exact attention over its last R rows
// (no pooling, no stride, fp32), the mass a_h per key block, and the budget n_h. The logits run
// through the logit-statistics micro-kernel of the active tier (vdpbf16ps for bf16, FMA for
// fp32); the scalar tier keeps the plain loops.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <vector>

#include "common/rules.h"
#include "cpu/kernels/buffer.h"
#include "cpu/kernels/kernels.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

namespace {

// a_h[n] = (1/R) sum over the last R rows t of the softmax mass of row t in key block n (fp32
// logits, double sums), by the plain loops.
std::vector<double> last_rows_mass_scalar(const Problem& p, const Sequence& s, std::int64_t b,
                                          std::int64_t h, std::int64_t kv) {
  const std::int64_t D = p.shape.head_dim, nb = s.num_blocks, N = s.n_tokens;
  const std::int64_t rows = std::min<std::int64_t>(b, N);  // R: the last b rows, even if N % b != 0
  const std::int64_t first_row = N - rows;
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
  return a;
}

// The same through the logit-statistics micro-kernel (kernels.h, StatsItem): per (row, key block)
// the max and the sum of exp below it, combined per row in double. Q's R rows are packed once in
// the kernel's layout; K is read in place.
std::vector<double> last_rows_mass_simd(const Problem& p, const Sequence& s, std::int64_t b,
                                        std::int64_t h, std::int64_t kv, kernels::StatsFn stats,
                                        bool pairs) {
  const std::int64_t D = p.shape.head_dim, nb = s.num_blocks, N = s.n_tokens;
  const std::int64_t rows = std::min<std::int64_t>(b, N);
  const std::int64_t first_row = N - rows;
  std::int64_t rp = 16;  // lanes: 16, 32, 64 or 128
  while (rp < rows) rp *= 2;
  const bool bf16 = p.dtype == DType::kBFloat16;
  const std::size_t elem = dtype_size(p.dtype);
  kernels::AlignedArray<float> qp(static_cast<std::size_t>(D) * rp);  // fp32 [D][rp] or [D/2][rp][2] bf16
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t row = (s.start + first_row + r) * p.q_stride_n + h * p.q_stride_h;
    if (pairs) {
      const auto* src = static_cast<const std::uint16_t*>(p.q) + row;
      auto* dst = reinterpret_cast<std::uint16_t*>(qp.data());  // [D/2][rp][2]
      for (std::int64_t c = 0; c < D; ++c) dst[((c / 2) * rp + r) * 2 + (c & 1)] = src[c];
    } else {
      for (std::int64_t c = 0; c < D; ++c) qp[c * rp + r] = load_float(p.q, p.dtype, row + c);
    }
  }
  kernels::AlignedArray<float> bmax(nb * rp), bsum(nb * rp), tile((b + 32) * rp);
  kernels::StatsItem it;
  it.rows = static_cast<int>(rows);
  it.rows_pad = static_cast<int>(rp);
  it.head_dim = static_cast<int>(D);
  it.scale = p.scale;
  it.row0 = first_row;
  it.q_packed = qp.data();
  it.k = static_cast<const char*>(p.k) + (s.start * p.k_stride_n + kv * p.k_stride_h) * elem;
  it.k_stride = p.k_stride_n;
  it.k_bf16 = bf16;
  it.n_keys = N;
  it.key_block = static_cast<int>(b);
  it.bmax = bmax.data();
  it.bsum = bsum.data();
  it.tile = tile.data();
  stats(it);
  std::vector<double> a(nb, 0.0);
  for (std::int64_t r = 0; r < rows; ++r) {
    float mx = -std::numeric_limits<float>::infinity();
    for (std::int64_t n = 0; n < nb; ++n) mx = nan_max(mx, bmax[n * rp + r]);
    std::vector<double> part(nb, 0.0);
    double sum = 0.0;
    for (std::int64_t n = 0; n < nb; ++n) {
      const float m = bmax[n * rp + r];
      if (m == -std::numeric_limits<float>::infinity()) continue;
      part[n] = static_cast<double>(bsum[n * rp + r]) * std::exp(static_cast<double>(m - mx));
      sum += part[n];
    }
    const double inv = 1.0 / (sum * static_cast<double>(rows));
    for (std::int64_t n = 0; n < nb; ++n) a[n] += part[n] * inv;
  }
  return a;
}

}  // namespace

void budgets(const Problem& p, const Config& c, const Sequence& s, float* mass,
             std::int32_t* budgets_out, int threads) {
  const std::int64_t H = p.shape.num_qo_heads, nb = s.num_blocks, b = c.block_size;
  // bf16: vdpbf16ps where the tier has it, else fp32 FMA on the exactly widened values.
  const kernels::Isa isa = kernels::active_isa();
  const bool pairs = p.dtype == DType::kBFloat16 && kernels::stats_kernel(isa, true) != nullptr;
  const kernels::StatsFn stats = kernels::stats_kernel(isa, pairs);
  parallel_for(H, threads, [&](std::int64_t h) {
    const std::int64_t kv = h / p.shape.group_size();
    const std::vector<double> a = stats != nullptr
                                      ? last_rows_mass_simd(p, s, b, h, kv, stats, pairs)
                                      : last_rows_mass_scalar(p, s, b, h, kv);
    // Stage 6 ranks the last block by a_h; log(a_h) keeps that order where a_h is below the
    // float range (a peaked row's far blocks), which a_h cast to float would flatten into ties.
    float* log_a_h = mass + h * nb;  // [nb]
    for (std::int64_t n = 0; n < nb; ++n) log_a_h[n] = static_cast<float>(std::log(a[n]));
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
