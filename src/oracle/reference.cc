// src/oracle/reference.cc: docs/SPEC.md section 3, stage by stage, in plain loops and double precision.
// Never optimized: every fast path is tested against this file. Read it beside docs/SPEC.md.
#include "proxyattn/oracle/reference.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/check.h"
#include "common/numeric.h"
#include "common/rules.h"
#include "common/validate.h"
#include "common/workspace.h"
#include "oracle/operands.h"

namespace proxyattn::reference {

namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double q_at(const Problem& p, std::int64_t t, std::int64_t h, std::int64_t d) {
  return load(p.q, p.dtype, t * p.q_stride_n + h * p.q_stride_h + d);
}
double k_at(const Problem& p, std::int64_t t, std::int64_t h, std::int64_t d) {
  return load(p.k, p.dtype, t * p.k_stride_n + h * p.k_stride_h + d);
}
double v_at(const Problem& p, std::int64_t t, std::int64_t h, std::int64_t d) {
  return load(p.v, p.dtype, t * p.v_stride_n + h * p.v_stride_h + d);
}

// log(sum(exp(x))) with NaN propagation; -inf for an empty or all -inf list.
double log_sum_exp(const std::vector<double>& x) {
  double mx = kNegInf;
  for (double v : x) {
    if (std::isnan(v)) return v;
    mx = std::max(mx, v);
  }
  if (mx == kNegInf) return kNegInf;
  double sum = 0.0;
  for (double v : x) sum += std::exp(v - mx);
  return mx + std::log(sum);
}

// Stage 2: the proxy head of group j at token t (absolute index), rounded to the input dtype.
// Sum in fp32 over the heads in increasing index, multiply by the fp32 1/count, round (RNE).
std::vector<double> proxy_row(const Problem& p, bool query, std::int64_t j, std::int64_t g,
                              std::int64_t t) {
  const std::int64_t heads = query ? p.shape.num_qo_heads : p.shape.num_kv_heads;
  const std::int64_t per_group = heads / g;
  const float inv = 1.0f / static_cast<float>(per_group);
  std::vector<double> row(p.shape.head_dim);
  for (std::int64_t d = 0; d < p.shape.head_dim; ++d) {
    float sum = 0.0f;
    for (std::int64_t h = j * per_group; h < (j + 1) * per_group; ++h) {
      sum += static_cast<float>(query ? q_at(p, t, h, d) : k_at(p, t, h, d));
    }
    row[d] = round_to(p.dtype, sum * inv);
  }
  return row;
}

// Stages 2-4 for group j of one sequence: S[m * nb + n], -inf where no sampled pair exists.
std::vector<double> block_scores(const Problem& p, const Config& c, std::int64_t start,
                                 std::int64_t n_tokens, std::int64_t nb, std::int64_t j) {
  const std::int64_t g = c.num_proxy_heads, s = c.stride, b = c.block_size;
  const std::int64_t d_max = p.shape.head_dim;
  std::vector<std::vector<double>> qp, kp;  // sampled positions only, [samples][head_dim]
  for (std::int64_t t = 0; t < n_tokens; t += s) {
    qp.push_back(proxy_row(p, true, j, g, start + t));
    kp.push_back(proxy_row(p, false, j, g, start + t));
  }
  std::vector<double> S(nb * nb, kNegInf);
  for (std::int64_t i = 0; i < static_cast<std::int64_t>(qp.size()); ++i) {
    const std::int64_t t = i * s;
    // Stage 3: L[t, u] = scale * <Qp[t], Kp[u]> for sampled u <= t, and lse[t].
    std::vector<double> logits;
    for (std::int64_t u_i = 0; u_i <= i; ++u_i) {
      double dot = 0.0;
      for (std::int64_t d = 0; d < d_max; ++d) dot += qp[i][d] * kp[u_i][d];
      logits.push_back(static_cast<double>(p.scale) * dot);
    }
    const double lse = log_sum_exp(logits);
    // Stage 4: S[m, n] = max of (L[t, u] - lse[t]) over the pairs in block (m, n).
    const std::int64_t m = t / b;
    for (std::int64_t u_i = 0; u_i <= i; ++u_i) {
      const std::int64_t n = (u_i * s) / b;
      const double x = logits[u_i] - lse;
      double& cell = S[m * nb + n];
      if (std::isnan(x) || std::isnan(cell)) {
        cell = std::numeric_limits<double>::quiet_NaN();
      } else {
        cell = std::max(cell, x);
      }
    }
  }
  return S;
}

// Stage 5 for query head h: a_h[n], the mean over the last R rows of each row's mass on block n.
std::vector<double> last_block_mass(const Problem& p, const Config& c, std::int64_t start,
                                    std::int64_t n_tokens, std::int64_t nb, std::int64_t h) {
  const std::int64_t kv = h / p.shape.group_size();
  const std::int64_t rows = std::min<std::int64_t>(c.block_size, n_tokens);
  std::vector<double> a(nb, 0.0);
  for (std::int64_t t = n_tokens - rows; t < n_tokens; ++t) {
    std::vector<double> logits(t + 1);
    for (std::int64_t u = 0; u <= t; ++u) {
      double dot = 0.0;
      for (std::int64_t d = 0; d < p.shape.head_dim; ++d) {
        dot += q_at(p, start + t, h, d) * k_at(p, start + u, kv, d);
      }
      logits[u] = static_cast<double>(p.scale) * dot;
    }
    const double lse = log_sum_exp(logits);
    for (std::int64_t u = 0; u <= t; ++u) {
      a[u / c.block_size] += std::exp(logits[u] - lse) / static_cast<double>(rows);
    }
  }
  return a;
}

// Visits every query row of the problem under a block mask in Plan::to_dense() layout:
// row(token, h, kv, keys) gets the row's absolute token index, its query and KV head, and the
// absolute indices of the keys u <= t of its sequence whose block the mask selects for (h, t / b).
template <typename Row>
void for_each_row(const Problem& p, std::int64_t block_size, const std::vector<std::uint8_t>& mask,
                  Row row) {
  std::size_t base = 0;  // the sequence's offset in the mask
  for (std::int64_t i = 0; i < p.shape.batch(); ++i) {
    const std::int64_t start = p.shape.cu_seqlens[i], n_tokens = p.shape.seq_len(i);
    const std::int64_t nb = (n_tokens + block_size - 1) / block_size;
    for (std::int64_t h = 0; h < p.shape.num_qo_heads; ++h) {
      const std::int64_t kv = h / p.shape.group_size();
      for (std::int64_t t = 0; t < n_tokens; ++t) {
        const std::int64_t m = t / block_size;
        std::vector<std::int64_t> keys;
        for (std::int64_t u = 0; u <= t; ++u) {
          if (mask[base + static_cast<std::size_t>((h * nb + m) * nb + u / block_size)] &&
              rules::causal(t, u)) {
            keys.push_back(start + u);
          }
        }
        row(start + t, h, kv, keys);
      }
    }
    base += static_cast<std::size_t>(p.shape.num_qo_heads * nb * nb);
  }
}

}  // namespace

double load(const void* data, DType dtype, std::int64_t i) {
  return static_cast<double>(load_float(data, dtype, i));
}

std::vector<SeqPlan> plan(const Operands& operands, const Config& c) {
  const Problem p = resolve(operands);
  const std::int64_t g = c.num_proxy_heads, H = p.shape.num_qo_heads;
  const std::int64_t heads_per_group = H / g;
  std::vector<SeqPlan> out(p.shape.batch());
  for (std::int64_t i = 0; i < p.shape.batch(); ++i) {
    SeqPlan& sp = out[i];
    const std::int64_t start = p.shape.cu_seqlens[i], n_tokens = p.shape.seq_len(i);
    const std::int64_t nb = (n_tokens + c.block_size - 1) / c.block_size;
    const std::int64_t tri = nb * (nb + 1) / 2;
    sp.num_blocks = nb;
    sp.dense = n_tokens <= c.dense_below();
    sp.group_order.assign(g * tri, 0);
    sp.last_order.assign(H * nb, 0);
    sp.counts.assign(H * nb, 0);
    sp.budgets.assign(H, nb);
    sp.raw_budgets.assign(H, nb);
    sp.margin.assign(H, 0.0);
    sp.mass.assign(H * nb, 0.0);
    sp.mass_sum.assign(H, 0.0);
    sp.block_scores.assign(g * nb * nb, kNegInf);
    if (sp.dense) {  // every block, identity orders
      for (std::int64_t j = 0; j < g; ++j) {
        for (std::int64_t m = 0; m < nb; ++m) {
          for (std::int64_t n = 0; n <= m; ++n) sp.group_order[j * tri + m * (m + 1) / 2 + n] = n;
        }
      }
      for (std::int64_t h = 0; h < H; ++h) {
        for (std::int64_t m = 0; m < nb; ++m) {
          sp.last_order[h * nb + m] = static_cast<std::int32_t>(m);
          sp.counts[h * nb + m] = static_cast<std::int32_t>(m + 1);
        }
      }
      continue;
    }
    // Stages 1-4: block scores per group.
    for (std::int64_t j = 0; j < g; ++j) {
      const std::vector<double> S = block_scores(p, c, start, n_tokens, nb, j);
      std::copy(S.begin(), S.end(), sp.block_scores.begin() + j * nb * nb);
    }
    // Stage 5: budgets from each head's exact last-block mass.
    for (std::int64_t h = 0; h < H; ++h) {
      const std::vector<double> a = last_block_mass(p, c, start, n_tokens, nb, h);
      std::copy(a.begin(), a.end(), sp.mass.begin() + h * nb);
      std::vector<double> sorted = a;
      std::sort(sorted.begin(), sorted.end(), rules::nan_first_descending);
      std::vector<double> prefix(nb + 1, 0.0);  // prefix[c] = top-c sum
      for (std::int64_t n = 0; n < nb; ++n) prefix[n + 1] = prefix[n] + sorted[n];
      const double total = prefix[nb];  // sum(a_h), summed in sorted order
      sp.mass_sum[h] = total;
      const std::int64_t n_h =
          rules::budget_cut([&](std::int64_t i) { return sorted[i]; }, nb, c.gamma);
      if (std::isfinite(total) && total > 0.0) {
        sp.margin[h] = std::min(std::fabs(prefix[n_h] - c.gamma * total),
                                std::fabs(prefix[n_h - 1] - c.gamma * total)) / total;
      }
      sp.raw_budgets[h] = n_h;
      sp.budgets[h] = rules::clamp_budget(n_h, c.min_budget_blocks(), c.max_budget_blocks(), nb);
    }
    // Stage 6: one ranking per (group, query block), counts per head.
    for (std::int64_t j = 0; j < g; ++j) {
      for (std::int64_t m = 0; m < nb; ++m) {
        std::vector<std::int32_t> order(m + 1);
        std::iota(order.begin(), order.end(), 0);
        const double* S = sp.block_scores.data() + j * nb * nb + m * nb;
        std::sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) {
          return rules::ranks_before(rules::is_forced(m, a, c.keep_sink, c.keep_diagonal), S[a], a,
                                     rules::is_forced(m, b, c.keep_sink, c.keep_diagonal), S[b], b);
        });
        std::copy(order.begin(), order.end(), sp.group_order.begin() + j * tri + m * (m + 1) / 2);
      }
    }
    for (std::int64_t h = 0; h < H; ++h) {
      const std::int64_t j = h / heads_per_group;
      for (std::int64_t m = 0; m < nb; ++m) {
        const std::int64_t forced = rules::num_forced(m, c.keep_sink, c.keep_diagonal);
        const std::int64_t cnt = c.forced_density > 0.0
                                     ? rules::count_from_density(c.forced_density, m, forced)
                                     : rules::count_from_budget(sp.budgets[h], m, forced);
        sp.counts[h * nb + m] = static_cast<std::int32_t>(cnt);
      }
      // The last query block: the exact per-head ranking by a_h, or the group's row.
      const std::int64_t m = nb - 1;
      std::int32_t* last = sp.last_order.data() + h * nb;
      if (c.last_block_selection == LastBlockSelection::kExact) {
        std::iota(last, last + nb, 0);
        const double* a = sp.mass.data() + h * nb;
        std::sort(last, last + nb, [&](std::int32_t x, std::int32_t y) {
          return rules::ranks_before(rules::is_forced(m, x, c.keep_sink, c.keep_diagonal), a[x], x,
                                     rules::is_forced(m, y, c.keep_sink, c.keep_diagonal), a[y], y);
        });
      } else {
        const std::int32_t* row = sp.group_order.data() + j * tri + m * (m + 1) / 2;
        std::copy(row, row + nb, last);
      }
    }
  }
  return out;
}

Plan to_plan(const std::vector<SeqPlan>& seqs, const ProblemShape& shape, const Config& config,
             Workspace workspace, float scale) {
  const WorkspaceLayout l = make_workspace_layout(shape, config);
  PROXYATTN_CHECK(workspace.size >= l.total_bytes && workspace.device == Device::kCPU,
                  "workspace.size = ", workspace.size, ", expected a host workspace of at least ",
                  l.total_bytes, " bytes");
  Plan plan = bind_plan(l, workspace, scale);
  const std::int64_t H = shape.num_qo_heads;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const SeqPlan& sp = seqs[i];
    const std::int64_t nb = sp.num_blocks;
    std::copy(sp.group_order.begin(), sp.group_order.end(), plan.group_order + l.order_offset[i]);
    for (std::int64_t h = 0; h < H; ++h) {
      for (std::int64_t m = 0; m < nb; ++m) {
        plan.last_order[l.head_index(i, h, m)] = static_cast<BlockIndex>(sp.last_order[h * nb + m]);
        plan.counts[l.head_index(i, h, m)] = sp.counts[h * nb + m];
      }
      plan.budgets[i * H + h] = static_cast<std::int32_t>(sp.budgets[h]);
    }
  }
  std::fill(plan.flags, plan.flags + 4, 0);
  compute_density(plan);
  return plan;
}

namespace {

void attend_problem(const Problem& p, std::int64_t block_size, const std::vector<std::uint8_t>& mask,
                    std::vector<double>& out, std::vector<double>& lse) {
  const std::int64_t H = p.shape.num_qo_heads, D = p.shape.head_dim, T = p.shape.total_tokens;
  out.assign(T * H * D, 0.0);
  lse.assign(H * T, kNegInf);
  for_each_row(p, block_size, mask, [&](std::int64_t t, std::int64_t h, std::int64_t kv,
                                        const std::vector<std::int64_t>& keys) {
    std::vector<double> logits;
    for (std::int64_t u : keys) {
      double dot = 0.0;
      for (std::int64_t d = 0; d < D; ++d) dot += q_at(p, t, h, d) * k_at(p, u, kv, d);
      logits.push_back(static_cast<double>(p.scale) * dot);
    }
    const double row_lse = log_sum_exp(logits);
    lse[h * T + t] = row_lse;
    if (keys.empty()) return;  // attends nothing: O = 0, LSE = -inf
    double* o = out.data() + (t * H + h) * D;
    for (std::size_t e = 0; e < keys.size(); ++e) {
      const double w = std::exp(logits[e] - row_lse);
      for (std::int64_t d = 0; d < D; ++d) o[d] += w * v_at(p, keys[e], kv, d);
    }
  });
}

}  // namespace

void attend(const Operands& operands, std::int64_t block_size, const std::vector<std::uint8_t>& mask,
            std::vector<double>& out, std::vector<double>& lse) {
  attend_problem(resolve(operands), block_size, mask, out, lse);
}

void naive_attend(const Operands& operands, std::int64_t block_size,
                  const std::vector<std::uint8_t>& mask, std::vector<std::uint8_t>& out) {
  const Problem p = resolve(operands);
  const std::int64_t H = p.shape.num_qo_heads, D = p.shape.head_dim, T = p.shape.total_tokens;
  out.assign(static_cast<std::size_t>(T * H * D) * dtype_size(p.dtype), 0);
  for_each_row(p, block_size, mask, [&](std::int64_t t, std::int64_t h, std::int64_t kv,
                                        const std::vector<std::int64_t>& keys) {
    if (keys.empty()) return;  // O = 0
    std::vector<float> s;
    for (std::int64_t u : keys) {
      float dot = 0.0f;
      for (std::int64_t d = 0; d < D; ++d) {
        dot += static_cast<float>(q_at(p, t, h, d)) * static_cast<float>(k_at(p, u, kv, d));
      }
      s.push_back(p.scale * dot);
    }
    float mx = s[0];
    for (float x : s) mx = (x != x || x > mx) ? x : mx;
    float sum = 0.0f;
    for (float& x : s) sum += (x = std::exp(x - mx));
    std::vector<float> o(D, 0.0f);
    for (std::size_t e = 0; e < keys.size(); ++e) {
      const float prob = round_to(p.dtype, s[e] / sum);
      for (std::int64_t d = 0; d < D; ++d) o[d] += prob * static_cast<float>(v_at(p, keys[e], kv, d));
    }
    for (std::int64_t d = 0; d < D; ++d) store_float(out.data(), p.dtype, (t * H + h) * D + d, o[d]);
  });
}

std::vector<std::uint8_t> full_mask(const ProblemShape& shape, std::int64_t block_size) {
  std::vector<std::uint8_t> mask;
  for (std::int64_t i = 0; i < shape.batch(); ++i) {
    const std::int64_t nb = (shape.seq_len(i) + block_size - 1) / block_size;
    mask.insert(mask.end(), static_cast<std::size_t>(shape.num_qo_heads * nb * nb), 1);
  }
  return mask;
}

void dense(const Operands& operands, std::vector<double>& out, std::vector<double>& lse) {
  // Dense attention is the sparse definition with every causal block selected.
  constexpr std::int64_t kBlock = 128;
  const Problem p = resolve(operands);
  attend_problem(p, kBlock, full_mask(p.shape, kBlock), out, lse);
}

}  // namespace proxyattn::reference
