// src/oracle/conformance.cc: docs/SPEC.md section 4, plan and output conformance against the reference.
#include "proxyattn/oracle/conformance.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <sstream>

#include "common/numeric.h"
#include "common/rules.h"
#include "oracle/operands.h"

namespace proxyattn {

namespace {

// |x - y| <= delta, with -inf == -inf and NaN == NaN.
bool near(double x, double y, double delta) {
  if (std::isnan(x) || std::isnan(y)) return std::isnan(x) && std::isnan(y);
  if (std::isinf(x) || std::isinf(y)) return x == y;
  return std::fabs(x - y) <= delta;
}

// Rule 1: may a backend's clamped budget B stand beside the reference's? B must be a plausible
// cut of the reference's own sorted prefix sums, within delta * sum(a_h), unless a clamp set it.
bool budget_conforms(const reference::SeqPlan& sp, std::int64_t h, std::int64_t B,
                     const Config& c, double delta) {
  const std::int64_t nb = sp.num_blocks;
  if (B == sp.budgets[h]) return true;
  const double* a = sp.mass.data() + h * nb;
  std::vector<double> sorted(a, a + nb);
  if (std::any_of(sorted.begin(), sorted.end(), [](double x) { return std::isnan(x); })) {
    return false;  // the reference takes every block; nothing is near a boundary
  }
  std::sort(sorted.begin(), sorted.end(), std::greater<double>());
  std::vector<double> prefix(nb + 1, 0.0);
  for (std::int64_t n = 0; n < nb; ++n) prefix[n + 1] = prefix[n] + sorted[n];
  const double total = prefix[nb], target = c.gamma * total, slack = delta * total;
  if (B < 1 || B > nb) return false;
  const std::int64_t lo = std::min(c.min_budget_blocks(), nb);
  const std::int64_t hi = std::min(c.max_budget_blocks(), nb);
  const bool not_too_small = B >= hi || prefix[B] >= target - slack;
  const bool not_too_big = B <= lo || prefix[B - 1] < target + slack;
  return not_too_small && not_too_big;
}

}  // namespace

PlanConformance check_plan(const std::vector<reference::SeqPlan>& ref, const Plan& plan,
                           const Config& c, double delta) {
  PlanConformance r;
  const PlanLayout& l = plan.layout;
  auto fail = [&](const std::string& what) {
    r.ok = false;
    if (r.first_failure.empty()) r.first_failure = what;
  };
  if (plan.device != Device::kCPU) {
    fail("plan is on the device; copy it to the host first");
    return r;
  }
  if (static_cast<std::int64_t>(ref.size()) != l.batch) {
    fail("batch differs from the reference's");
    return r;
  }
  const std::int64_t H = l.num_qo_heads, g = l.num_proxy_heads;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const reference::SeqPlan& sp = ref[i];
    const std::int64_t nb = sp.num_blocks, tri = nb * (nb + 1) / 2;
    for (std::int64_t h = 0; h < H; ++h) {
      ++r.budgets_checked;
      const std::int64_t B = plan.budgets[i * H + h];
      if (!sp.dense && !budget_conforms(sp, h, B, c, delta)) {
        ++r.budget_mismatches;
        std::ostringstream os;
        os << "sequence " << i << " head " << h << ": budget " << B << " blocks, reference "
           << sp.budgets[h] << " (margin " << sp.margin[h] << ")";
        fail(os.str());
      }
      const std::int64_t j = h / (H / g);
      for (std::int64_t m = 0; m < nb; ++m) {
        ++r.rows_checked;
        const std::int64_t count = plan.counts[l.head_index(i, h, m)];
        const BlockIndex* order = plan.row_order(i, h, m);
        std::ostringstream where;
        where << "sequence " << i << " head " << h << " query block " << m;
        // The backend's ranking must be a permutation of the causal blocks.
        std::vector<char> seen(m + 1, 0);
        bool permutation = count >= 0 && count <= m + 1;
        for (std::int64_t e = 0; e <= m && permutation; ++e) {
          const std::int64_t n = order[e];
          permutation = n >= 0 && n <= m && !seen[n];
          if (permutation) seen[n] = 1;
        }
        if (!permutation) {
          ++r.selection_mismatches;
          fail(where.str() + ": the plan's row is not a permutation of the causal blocks");
          continue;
        }
        // Reference ranking and scores of this row.
        const bool exact_last = m == nb - 1 && c.last_block_selection == LastBlockSelection::kExact;
        const std::int32_t* ref_order = m == nb - 1 ? sp.last_order.data() + h * nb
                                                    : sp.group_order.data() + j * tri + m * (m + 1) / 2;
        auto score = [&](std::int64_t n) -> double {
          if (sp.dense) return 0.0;
          if (exact_last) return std::log(sp.mass[h * nb + n]);
          return sp.block_scores[(j * nb + m) * nb + n];
        };
        if (count == 0) continue;
        std::vector<char> ref_sel(m + 1, 0), our_sel(m + 1, 0);
        for (std::int64_t e = 0; e < count; ++e) {
          ref_sel[ref_order[e]] = 1;
          our_sel[order[e]] = 1;
        }
        const double cut_in = score(ref_order[count - 1]);
        const double cut_out = count <= m ? score(ref_order[count]) : cut_in;
        bool row_ok = true;
        for (std::int64_t n = 0; n <= m; ++n) {
          if (ref_sel[n] == our_sel[n]) continue;
          const double x = score(n);
          if (!near(x, cut_in, delta) && !near(x, cut_out, delta)) row_ok = false;
        }
        if (!row_ok) {
          ++r.selection_mismatches;
          fail(where.str() + ": a block selected by one side only is not within delta of the cut");
        }
      }
    }
  }
  return r;
}

namespace {

// max that keeps NaN: std::max(a, NaN) returns a and would hide a NaN error from the report.
double nan_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }

}  // namespace

OutputError compare_output(const reference::Operands& operands, const std::vector<double>& out_ref,
                           const std::vector<double>& lse_ref) {
  const Problem p = reference::resolve(operands);
  OutputError e;
  const std::int64_t H = p.shape.num_qo_heads, D = p.shape.head_dim, T = p.shape.total_tokens;
  e.rel_error_per_head.assign(H, 0.0);
  double abs_sum = 0.0;
  for (std::int64_t h = 0; h < H; ++h) {
    double diff2 = 0.0, ref2 = 0.0;
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t d = 0; d < D; ++d) {
        const double x = load_float(p.o, p.dtype, t * p.o_stride_n + h * p.o_stride_h + d);
        const double y = out_ref[(t * H + h) * D + d];
        if (!std::isfinite(x) && std::isfinite(y)) ++e.non_finite;
        // Where the reference is NaN or Inf (NaN/Inf inputs propagate as dense attention does),
        // the output must be the same non-finite value; anything else is a mismatch.
        if (!std::isfinite(y) && !(x == y || (std::isnan(x) && std::isnan(y)))) ++e.non_finite;
        const double diff = std::isfinite(y) ? std::fabs(x - y) : 0.0;
        diff2 += diff * diff;
        ref2 += std::isfinite(y) ? y * y : 0.0;
        e.max_abs_error = std::max(e.max_abs_error, std::isnan(diff) ? INFINITY : diff);
        abs_sum += diff;
      }
      if (p.lse != nullptr) {
        const double x = p.lse[h * p.lse_stride_h + t];
        const double y = lse_ref[h * T + t];
        if (std::isfinite(y)) {
          e.lse_max_abs_error = nan_max(e.lse_max_abs_error, std::fabs(x - y));
          if (!std::isfinite(x)) ++e.non_finite;
        } else if (std::isinf(y) && x != y) {
          e.lse_max_abs_error = INFINITY;
        }
      }
    }
    e.rel_error_per_head[h] = ref2 > 0.0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2);
    e.rel_error = nan_max(e.rel_error, e.rel_error_per_head[h]);
  }
  const double n = static_cast<double>(T * H * D);
  e.mean_abs_error = n > 0 ? abs_sum / n : 0.0;
  return e;
}

double output_tolerance(DType dtype, std::int64_t head_dim) {
  // Measured same-precision naive errors sit near 2.5e-6 (fp32) and 2.3e-3 (bf16) on the
  // generated workloads; these ceilings leave room for longer rows than the tests use.
  switch (dtype) {
    case DType::kFloat32: return 2e-5;
    case DType::kBFloat16: return 1.6e-2;
    case DType::kFloat16: return 2e-3;
  }
  return 0.0;
}

double naive_output_bound(const OutputError& naive, DType dtype) {
  const double noise = dtype == DType::kFloat32 ? 1e-6 : 1e-4;
  return 2.0 * naive.rel_error + noise;
}

bool output_conforms(const OutputError& ours, double bound, DType dtype) {
  if (ours.non_finite != 0 || !(ours.lse_max_abs_error <= 1e-3)) return false;
  if (ours.rel_error <= bound) return true;
  return dtype != DType::kFloat32 && ours.max_abs_error <= 1e-2 && ours.mean_abs_error <= 1e-3;
}

}  // namespace proxyattn
