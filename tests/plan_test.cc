// tests/plan_test.cc: the CPU plan (proxyattn::plan) against the double reference
// (reference::plan) with docs/SPEC.md section 4's conformance rule (check_plan), over a sweep of
// lengths, block sizes, strides, GQA ratios, proxy-group counts, gamma, last-block modes, dtypes
// and workloads; plus the plan's invariants, statistics, NaN inputs, gamma = 1, min_budget > N
// and thread-count independence.
//
// Run: ./build/tests/plan_test
// Variants:
//   PlanSweep/*       default: N <= 1000, at most 7 heads; PROXYATTN_TEST_LEVEL=full adds longer
//                     sequences (up to 3771), more heads (8/2, 8/8, 28/4) and both dtypes and
//                     workloads for every point
//   PlanVarlen/*      packed batches mixing dense-fallback and sparse sequences
//   Plan.*            invariants and edge cases
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ostream>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "common/numeric.h"
#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/reference.h"
#include "proxyattn/proxyattn.h"
#include "proxyattn/oracle/compare.h"
#include "proxyattn/oracle/workload.h"
#include "testing/env.h"

namespace proxyattn {

namespace {

using testing::Buffer;
using testing::full_level;
using testing::Workload;
using testing::WorkloadKind;

// ---- Shared checks ---------------------------------------------------------------------------

// Every row's ranking is a permutation of [0, m], counts are in [0, m + 1] and at least the
// forced blocks, and heads of a group select nested prefixes (below the last block).
void expect_plan_invariants(const Plan& p, const Config& c) {
  const PlanLayout& l = p.layout;
  const std::int64_t per_group = l.num_qo_heads / l.num_proxy_heads;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t nb = l.num_blocks[i];
    for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
      for (std::int64_t m = 0; m < nb; ++m) {
        const BlockIndex* order = p.row_order(i, h, m);
        std::vector<char> seen(m + 1, 0);
        for (std::int64_t e = 0; e <= m; ++e) {
          ASSERT_GE(order[e], 0) << "seq " << i << " head " << h << " row " << m;
          ASSERT_LE(order[e], m) << "seq " << i << " head " << h << " row " << m;
          ASSERT_FALSE(seen[order[e]]) << "seq " << i << " head " << h << " row " << m
                                       << ": block " << order[e] << " appears twice";
          seen[order[e]] = 1;
        }
        const std::int32_t count = p.counts[l.head_index(i, h, m)];
        ASSERT_GE(count, 1);
        ASSERT_LE(count, m + 1);
        if (!l.is_dense[i] && c.forced_density == 0.0) {
          // Forced blocks lead the ranking (in score order among themselves).
          std::vector<std::int64_t> lead(order, order + (m == 0 ? 1 : (c.keep_sink ? 1 : 0) +
                                                                         (c.keep_diagonal ? 1 : 0)));
          std::vector<std::int64_t> forced;
          if (c.keep_sink) forced.push_back(0);
          if (c.keep_diagonal && (m > 0 || !c.keep_sink)) forced.push_back(m);
          if (m == 0 && !c.keep_sink && !c.keep_diagonal) lead.clear();
          std::sort(lead.begin(), lead.end());
          std::sort(forced.begin(), forced.end());
          EXPECT_EQ(lead, forced) << "seq " << i << " head " << h << " row " << m;
          EXPECT_GE(count, static_cast<std::int32_t>(forced.size()));
        }
      }
      // Heads of one group share the ranking of every row but the last.
      const std::int64_t first = (h / per_group) * per_group;
      for (std::int64_t m = 0; m + 1 < nb; ++m) {
        ASSERT_EQ(p.row_order(i, h, m), p.row_order(i, first, m));
      }
    }
  }
}

// The plan arrays, copied, for bitwise comparisons.
struct PlanArrays {
  std::vector<BlockIndex> group_order, last_order;
  std::vector<std::int32_t> counts, budgets;
  std::vector<float> density;
  bool operator==(const PlanArrays& o) const {
    return group_order == o.group_order && last_order == o.last_order && counts == o.counts &&
           budgets == o.budgets &&
           std::memcmp(density.data(), o.density.data(), density.size() * sizeof(float)) == 0;
  }
};

PlanArrays arrays_of(const Plan& p) {
  const PlanLayout& l = p.layout;
  PlanArrays a;
  a.group_order.assign(p.group_order, p.group_order + l.order_offset[l.batch]);
  a.last_order.assign(p.last_order, p.last_order + l.head_offset[l.batch]);
  a.counts.assign(p.counts, p.counts + l.head_offset[l.batch]);
  a.budgets.assign(p.budgets, p.budgets + l.batch * l.num_qo_heads);
  a.density.assign(p.density, p.density + l.batch * l.num_qo_heads);
  return a;
}

Workload make(std::vector<std::int32_t> lens, std::int64_t hq, std::int64_t hkv, DType dtype,
              WorkloadKind kind, std::uint64_t seed, std::int64_t d = 64) {
  return testing::make_workload(std::move(lens), hq, hkv, d, dtype, kind, seed);
}

// Plans with the CPU path and the reference, checks conformance and the invariants.
void expect_conforms(const Workload& w, const Config& c, int threads = 2) {
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace(), Runtime{threads});
  const auto ref = reference::plan(testing::operands_of(w, nullptr, c.scale), c);
  const PlanConformance r = check_plan(ref, p, c);
  EXPECT_TRUE(r.ok) << r.first_failure << " (" << r.budget_mismatches << " budget and "
                    << r.selection_mismatches << " selection mismatches of " << r.rows_checked
                    << " rows)";
  EXPECT_EQ(r.budgets_checked, static_cast<std::int64_t>(w.cu_seqlens.size() - 1) *
                                   w.spec.num_qo_heads);
  expect_plan_invariants(p, c);
}

// ---- The sweep ---------------------------------------------------------------------------------

struct Heads {
  std::int64_t qo, kv;
};
void PrintTo(const Heads& h, std::ostream* os) { *os << h.qo << "/" << h.kv << " heads"; }

// Sweep axes: N, block, stride, heads, last-block mode, variant. The variant and a hash of the
// other axes pick g (a divisor of num_kv_heads), gamma, min budget, dtype and workload, so that
// each of them is covered without multiplying the sweep; the test name spells every choice.
using SweepParam = std::tuple<int, int, int, Heads, LastBlockSelection, int>;

struct SweepCase {
  int n, block, stride;
  Heads heads;
  LastBlockSelection mode;
  int g;
  double gamma;
  std::int64_t min_budget;
  DType dtype;
  WorkloadKind kind;
  std::uint64_t seed;
};

SweepCase resolve(const SweepParam& param) {
  SweepCase c;
  int variant;
  std::tie(c.n, c.block, c.stride, c.heads, c.mode, variant) = param;
  std::uint64_t k = testing::mix_seed(static_cast<std::uint64_t>(c.n) * 131 + c.block * 7 + c.stride,
                                      static_cast<std::uint64_t>(c.heads.qo * 64 + c.heads.kv));
  k = testing::mix_seed(k, static_cast<std::uint64_t>(variant));
  std::vector<int> divisors;
  for (int g = 1; g <= c.heads.kv; ++g) {
    if (c.heads.kv % g == 0) divisors.push_back(g);
  }
  c.g = divisors[k % divisors.size()];
  static const double kGammas[] = {0.5, 0.7, 0.9, 0.95, 1.0};
  c.gamma = kGammas[(k >> 8) % 5];
  static const int kMinBlocks[] = {0, 1, 3};
  c.min_budget = static_cast<std::int64_t>(kMinBlocks[(k >> 16) % 3]) * c.block;
  // Variants 0/1 alternate dtype and workload; the full level runs variants 0..3 (all four).
  const int flip = static_cast<int>((k >> 24) & 1);
  c.dtype = ((variant & 1) ^ flip) ? DType::kBFloat16 : DType::kFloat32;
  c.kind = (((variant >> 1) & 1) ^ (variant & 1) ^ flip) ? WorkloadKind::kStructured
                                                        : WorkloadKind::kRandom;
  c.seed = k;
  return c;
}

std::string sweep_name(const ::testing::TestParamInfo<SweepParam>& info) {
  const SweepCase c = resolve(info.param);
  std::ostringstream os;
  os << "N" << c.n << "_b" << c.block << "_s" << c.stride << "_h" << c.heads.qo << "x"
     << c.heads.kv << "_g" << c.g << "_gamma" << static_cast<int>(std::lround(c.gamma * 100))
     << "_min" << c.min_budget << "_" << to_string(c.mode) << "_" << to_string(c.dtype) << "_"
     << testing::to_string(c.kind) << "_v" << std::get<5>(info.param);
  return os.str();
}

class PlanSweep : public ::testing::TestWithParam<SweepParam> {};

TEST_P(PlanSweep, ConformsToReference) {
  const SweepCase sc = resolve(GetParam());
  const Workload w = make({sc.n}, sc.heads.qo, sc.heads.kv, sc.dtype, sc.kind, sc.seed);
  Config c;
  c.block_size = sc.block;
  c.stride = sc.stride;
  c.gamma = sc.gamma;
  c.num_proxy_heads = sc.g;
  c.min_budget_tokens = sc.min_budget;
  c.dense_below_tokens = 0;  // every length runs the sparse path
  c.last_block_selection = sc.mode;
  expect_conforms(w, c);
}

std::vector<int> sweep_lengths() {
  if (full_level()) return {1, 37, 113, 127, 577, 1000, 1024, 2049, 3771};
  return {1, 37, 113, 127, 577, 1000};
}
std::vector<Heads> sweep_heads() {
  if (full_level()) return {{4, 4}, {4, 1}, {7, 1}, {8, 2}, {8, 8}, {28, 4}};
  return {{4, 4}, {4, 1}, {7, 1}};
}
std::vector<int> sweep_variants() {
  if (full_level()) return {0, 1, 2, 3};
  return {0};
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, PlanSweep,
    ::testing::Combine(::testing::ValuesIn(sweep_lengths()), ::testing::Values(64, 128),
                       ::testing::Values(1, 2, 4), ::testing::ValuesIn(sweep_heads()),
                       ::testing::Values(LastBlockSelection::kExact, LastBlockSelection::kProxy),
                       ::testing::ValuesIn(sweep_variants())),
    sweep_name);

// ---- Varlen batches ----------------------------------------------------------------------------

using VarlenParam = std::tuple<int, LastBlockSelection, DType>;

class PlanVarlen : public ::testing::TestWithParam<VarlenParam> {};

TEST_P(PlanVarlen, MixesDenseFallbackAndSparse) {
  const auto [block, mode, dtype] = GetParam();
  // With dense_below = 2b (the auto rule at min budget 0): 37, 1, 100 and 2b run dense.
  const std::vector<std::int32_t> lens = {37, 700, 1, 2 * block, 577, 0, 100, 2 * block + 1};
  const Workload w = make(lens, 4, 2, dtype, WorkloadKind::kStructured, 7);
  Config c;
  c.block_size = block;
  c.stride = 2;
  c.gamma = 0.9;
  c.num_proxy_heads = 2;
  c.min_budget_tokens = 0;
  c.last_block_selection = mode;
  ASSERT_EQ(c.dense_below(), 2 * block);
  expect_conforms(w, c);
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace(), Runtime{2});
  const Plan::Stats s = p.stats();
  for (std::size_t i = 0; i < lens.size(); ++i) {
    const bool dense = lens[i] <= 2 * block;
    EXPECT_EQ(p.layout.is_dense[i], dense ? 1 : 0) << "sequence " << i;
    const std::int64_t nb = p.layout.num_blocks[i];
    for (std::int64_t h = 0; h < 4; ++h) {
      if (dense) {
        EXPECT_EQ(s.budgets[i * 4 + h], nb) << "sequence " << i;
        EXPECT_EQ(s.density[i * 4 + h], 1.0f) << "sequence " << i;
        for (std::int64_t m = 0; m < nb; ++m) {
          EXPECT_EQ(p.counts[p.layout.head_index(i, h, m)], m + 1);
        }
      } else {
        EXPECT_LE(s.density[i * 4 + h], 1.0f);
        EXPECT_GT(s.density[i * 4 + h], 0.0f);
      }
    }
  }
}

std::string varlen_name(const ::testing::TestParamInfo<VarlenParam>& info) {
  return "b" + std::to_string(std::get<0>(info.param)) + "_" + to_string(std::get<1>(info.param)) +
         "_" + to_string(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    Varlen, PlanVarlen,
    ::testing::Combine(::testing::Values(64, 128),
                       ::testing::Values(LastBlockSelection::kExact, LastBlockSelection::kProxy),
                       ::testing::Values(DType::kFloat32, DType::kBFloat16)),
    varlen_name);

// ---- Edge cases and invariants -----------------------------------------------------------------

Config small_config(int block = 64) {
  Config c;
  c.block_size = block;
  c.stride = 2;
  c.gamma = 0.8;
  c.min_budget_tokens = 0;
  c.dense_below_tokens = 0;
  return c;
}

TEST(Plan, DensityStatsMatchSelection) {
  const Workload w = make({700, 300}, 4, 1, DType::kFloat32, WorkloadKind::kStructured, 3);
  const Config c = small_config();
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace(), Runtime{2});
  const std::vector<std::uint8_t> mask = p.to_dense();
  const Plan::Stats s = p.stats();
  ASSERT_EQ(s.density.size(), 8u);
  ASSERT_EQ(s.seq_density.size(), 2u);
  std::size_t base = 0;
  double selected_all = 0.0, causal_all = 0.0;
  for (std::int64_t i = 0; i < 2; ++i) {
    const std::int64_t nb = p.layout.num_blocks[i], tri = nb * (nb + 1) / 2;
    double seq = 0.0;
    for (std::int64_t h = 0; h < 4; ++h) {
      std::int64_t selected = 0;
      for (std::int64_t m = 0; m < nb; ++m) {
        for (std::int64_t n = 0; n < nb; ++n) {
          const std::uint8_t x = mask[base + (h * nb + m) * nb + n];
          if (n > m) {
            EXPECT_EQ(x, 0) << "selected a block above the diagonal";
          }
          selected += x;
        }
      }
      const double want = static_cast<double>(selected) / static_cast<double>(tri);
      EXPECT_FLOAT_EQ(s.density[i * 4 + h], static_cast<float>(want));
      EXPECT_EQ(s.density[i * 4 + h], p.density[i * 4 + h]);
      EXPECT_EQ(s.budgets[i * 4 + h], p.budgets[i * 4 + h]);
      EXPECT_GE(s.budgets[i * 4 + h], 1);
      EXPECT_LE(s.budgets[i * 4 + h], nb);
      seq += want / 4.0;
      selected_all += static_cast<double>(selected);
      causal_all += static_cast<double>(tri);
    }
    EXPECT_NEAR(s.seq_density[i], seq, 1e-6);
    base += static_cast<std::size_t>(4 * nb * nb);
  }
  EXPECT_NEAR(s.density_weighted, selected_all / causal_all, 1e-6);
  EXPECT_LT(s.density_weighted, 1.0);  // the structured workload is sparse at gamma 0.8
}

TEST(Plan, CountsFollowBudgets) {
  const Workload w = make({900}, 4, 4, DType::kFloat32, WorkloadKind::kStructured, 5);
  Config c = small_config();
  c.num_proxy_heads = 2;
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace(), Runtime{2});
  const std::int64_t nb = p.layout.num_blocks[0];
  for (std::int64_t h = 0; h < 4; ++h) {
    const std::int64_t budget = p.budgets[h];
    for (std::int64_t m = 0; m < nb; ++m) {
      const std::int64_t forced = m == 0 ? 1 : 2;
      EXPECT_EQ(p.counts[p.layout.head_index(0, h, m)],
                std::max(std::min(budget, m + 1), forced))
          << "head " << h << " row " << m;
    }
  }
}

TEST(Plan, NanInputsDoNotCrashAndTakeFullBudgets) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    for (int where = 0; where < 3; ++where) {
      Workload w = make({600, 300}, 4, 2, dtype, WorkloadKind::kRandom, 11);
      const std::int64_t D = 64;
      if (where == 0) {  // NaN in q of head 1, a token in the last block of sequence 0
        store_float(w.q.data(), dtype, (590 * 4 + 1) * D + 3, std::nanf(""));
      } else if (where == 1) {  // NaN in k of KV head 0 at token 5 of sequence 0
        store_float(w.k.data(), dtype, (5 * 2 + 0) * D + 7, std::nanf(""));
      } else {  // NaN in q of every head at token 0 of sequence 1 (sampled, proxy row NaN)
        for (int h = 0; h < 4; ++h) store_float(w.q.data(), dtype, ((600 + 0) * 4 + h) * D, std::nanf(""));
      }
      const Config c = small_config();
      Buffer ws(workspace_size(w.shape(), c));
      Plan p;
      ASSERT_NO_THROW(p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace(), Runtime{2}));
      const auto ref = reference::plan(testing::operands_of(w, nullptr, c.scale), c);
      const PlanConformance r = check_plan(ref, p, c);
      EXPECT_TRUE(r.ok) << "case " << where << " " << to_string(dtype) << ": " << r.first_failure;
      expect_plan_invariants(p, c);
      for (std::int64_t i = 0; i < 2; ++i) {
        const std::int64_t nb = p.layout.num_blocks[i];
        for (std::int64_t h = 0; h < 4; ++h) {
          bool nan_mass = false;
          for (std::int64_t n = 0; n < nb; ++n) nan_mass |= std::isnan(ref[i].mass[h * nb + n]);
          if (nan_mass) {
            EXPECT_EQ(p.budgets[i * 4 + h], nb) << "seq " << i << " head " << h;
          }
        }
      }
      // The NaN cases that reach stage 5 make the full budget: q in the last block of head 1,
      // and k at token 5 of KV head 0 (heads 0 and 1).
      if (where == 0) {
        EXPECT_EQ(p.budgets[1], p.layout.num_blocks[0]);
      }
      if (where == 1) {
        EXPECT_EQ(p.budgets[0], p.layout.num_blocks[0]);
        EXPECT_EQ(p.budgets[1], p.layout.num_blocks[0]);
      }
      // And attention over the plan does not crash.
      testing::Output out = testing::make_output(w);
      EXPECT_NO_THROW(attend(w.q_view(), w.k_view(), w.v_view(), p, out.o_view, &out.lse_view,
                             Runtime{2}));
    }
  }
}

TEST(Plan, GammaOneConforms) {
  for (auto mode : {LastBlockSelection::kExact, LastBlockSelection::kProxy}) {
    const Workload w = make({800}, 4, 2, DType::kFloat32, WorkloadKind::kRandom, 13);
    Config c = small_config();
    c.gamma = 1.0;
    c.last_block_selection = mode;
    expect_conforms(w, c);
    Buffer ws(workspace_size(w.shape(), c));
    const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace());
    // On random data every block carries mass, so gamma = 1 needs them all.
    for (std::int64_t h = 0; h < 4; ++h) EXPECT_EQ(p.budgets[h], p.layout.num_blocks[0]);
  }
}

TEST(Plan, MinBudgetAboveNSelectsEverything) {
  const Workload w = make({500, 90}, 4, 1, DType::kBFloat16, WorkloadKind::kStructured, 17);
  Config c = small_config();
  c.gamma = 0.5;
  c.min_budget_tokens = 4096;  // > N
  c.dense_below_tokens = 0;    // keep the sparse path (auto would make both dense)
  expect_conforms(w, c);
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace());
  for (float d : p.stats().density) EXPECT_EQ(d, 1.0f);
  for (std::int64_t i = 0; i < 2; ++i) {
    for (std::int64_t h = 0; h < 4; ++h) EXPECT_EQ(p.budgets[i * 4 + h], p.layout.num_blocks[i]);
  }
}

TEST(Plan, MaxBudgetClamps) {
  const Workload w = make({1000}, 4, 4, DType::kFloat32, WorkloadKind::kRandom, 19);
  Config c = small_config();
  c.gamma = 1.0;
  c.max_budget_tokens = 200;  // 4 blocks of 64
  expect_conforms(w, c);
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace());
  for (std::int64_t h = 0; h < 4; ++h) EXPECT_EQ(p.budgets[h], 4);
}

TEST(Plan, ForcedDensityConforms) {
  const Workload w = make({1000}, 4, 2, DType::kFloat32, WorkloadKind::kStructured, 23);
  for (double density : {0.1, 0.5, 1.0}) {
    Config c = small_config();
    c.forced_density = density;
    expect_conforms(w, c);
    Buffer ws(workspace_size(w.shape(), c));
    const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace());
    const std::int64_t nb = p.layout.num_blocks[0];
    for (std::int64_t m = 0; m < nb; ++m) {
      const std::int64_t forced = m == 0 ? 1 : 2;
      const std::int64_t want = std::min<std::int64_t>(
          m + 1, std::max<std::int64_t>(forced,
                                        static_cast<std::int64_t>(std::ceil(density * (m + 1)))));
      EXPECT_EQ(p.counts[p.layout.head_index(0, 3, m)], want) << density << " row " << m;
    }
  }
}

TEST(Plan, ExactLastBlockRanksMassesBelowFloatRange) {
  // Under `exact` the last block ranks key blocks by a_h. Here blocks 1-3 carry masses of about
  // e^-300, e^-200 and e^-250 (below the smallest float), and the 3-block minimum budget cuts
  // among them: the plan must keep block 2, the largest of the three, as the reference does.
  const std::int64_t b = 64, nb = 5, n = nb * b, d = 8;
  const float logit[nb] = {0.0f, -300.0f, -200.0f, -250.0f, 0.0f};  // per key block
  std::vector<float> q(n * d, 0.0f), k(n * d, 0.0f), v(n * d, 0.0f);
  for (std::int64_t t = 0; t < n; ++t) {
    q[t * d] = 1.0f;
    k[t * d] = logit[t / b];
    v[t * d + 1] = static_cast<float>(t % 7);
  }
  const Workload w = testing::workload_from_tensors(DType::kFloat32, n, 1, 1, d, q.data(),
                                                    k.data(), v.data(), {0, static_cast<int>(n)});
  Config c = small_config(b);
  c.gamma = 0.5;
  c.min_budget_tokens = 3 * b;
  c.scale = 1.0f;
  c.last_block_selection = LastBlockSelection::kExact;
  expect_conforms(w, c);
  Buffer ws(workspace_size(w.shape(), c));
  const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace());
  const BlockIndex* last = p.row_order(0, 0, nb - 1);
  ASSERT_EQ(p.counts[p.layout.head_index(0, 0, nb - 1)], 3);
  std::vector<std::int64_t> kept(last, last + 3);
  std::sort(kept.begin(), kept.end());
  EXPECT_EQ(kept, (std::vector<std::int64_t>{0, 2, 4}));
  EXPECT_EQ(std::vector<std::int64_t>(last + 3, last + nb), (std::vector<std::int64_t>{3, 1}));
}

TEST(Plan, NoForcedBlocksConforms) {
  const Workload w = make({700}, 4, 1, DType::kFloat32, WorkloadKind::kStructured, 29);
  Config c = small_config(128);
  c.keep_sink = false;
  c.keep_diagonal = false;
  c.stride = 4;
  for (auto mode : {LastBlockSelection::kExact, LastBlockSelection::kProxy}) {
    c.last_block_selection = mode;
    expect_conforms(w, c);
  }
}

TEST(Plan, EmptyBatchAndEmptySequences) {
  const Workload w = make({0, 0, 200, 0}, 4, 2, DType::kFloat32, WorkloadKind::kRandom, 31);
  const Config c = small_config();
  expect_conforms(w, c);
}

TEST(Plan, ThreadCountIndependence) {
  const Workload w = make({1000, 37, 333}, 4, 2, DType::kBFloat16, WorkloadKind::kStructured, 37);
  Config c = small_config();
  c.num_proxy_heads = 2;
  c.dense_below_tokens = 40;
  std::vector<PlanArrays> plans;
  std::vector<std::vector<unsigned char>> outs, lses;
  for (int threads : {1, 2, 3}) {
    Buffer ws(workspace_size(w.shape(), c));
    testing::Output out = testing::make_output(w);
    const Plan p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(),
                           out.o_view, &out.lse_view, Runtime{threads});
    plans.push_back(arrays_of(p));
    const auto* o = static_cast<const unsigned char*>(out.o.data());
    const auto* l = static_cast<const unsigned char*>(out.lse.data());
    outs.emplace_back(o, o + out.o.size());
    lses.emplace_back(l, l + out.lse.size());
  }
  for (std::size_t e = 1; e < plans.size(); ++e) {
    EXPECT_TRUE(plans[e] == plans[0]) << "plan differs with " << e + 1 << " threads";
    EXPECT_TRUE(outs[e] == outs[0]) << "output differs with " << e + 1 << " threads";
    EXPECT_TRUE(lses[e] == lses[0]) << "lse differs with " << e + 1 << " threads";
  }
}

TEST(Plan, RepeatedCallsAreDeterministic) {
  // A dirty workspace (a previous, different plan) must not leak into the next plan.
  const Workload a = make({800}, 4, 1, DType::kFloat32, WorkloadKind::kStructured, 41);
  const Workload b = make({800}, 4, 1, DType::kFloat32, WorkloadKind::kRandom, 43);
  const Config c = small_config();
  Buffer ws(workspace_size(a.shape(), c));
  Buffer clean(workspace_size(a.shape(), c));
  plan(a.q_view(), a.k_view(), a.seqlens(), c, ws.workspace());
  const Plan dirty = plan(b.q_view(), b.k_view(), b.seqlens(), c, ws.workspace());
  const Plan fresh = plan(b.q_view(), b.k_view(), b.seqlens(), c, clean.workspace());
  EXPECT_TRUE(arrays_of(dirty) == arrays_of(fresh));
}

TEST(Plan, EmptySequenceBudgetsOnReusedWorkspace) {
  // An empty sequence has nb = 0 and the reference's budget 0. A workspace that held another
  // plan before, or garbage, must not leak into the new plan's budgets.
  const Workload first = make({400, 400}, 4, 1, DType::kFloat32, WorkloadKind::kRandom, 47);
  const Workload second = make({800, 0}, 4, 1, DType::kFloat32, WorkloadKind::kRandom, 53);
  const Config c = small_config();
  Buffer ws(std::max(workspace_size(first.shape(), c), workspace_size(second.shape(), c)));
  plan(first.q_view(), first.k_view(), first.seqlens(), c, ws.workspace());
  std::memset(ws.data(), 0x5a, ws.size());  // and garbage, as fresh device memory holds
  const Plan p = plan(second.q_view(), second.k_view(), second.seqlens(), c, ws.workspace());
  const Plan::Stats s = p.stats();
  for (std::int64_t h = 0; h < 4; ++h) {
    EXPECT_EQ(s.budgets[4 + h], 0) << "head " << h << " of the empty sequence";
    EXPECT_EQ(s.density[4 + h], 1.0f);
  }
  const auto ref = reference::plan(testing::operands_of(second, nullptr, c.scale), c);
  const PlanConformance r = check_plan(ref, p, c);
  EXPECT_TRUE(r.ok) << r.first_failure;
}

}  // namespace
}  // namespace proxyattn
