// tests/reference_test.cc: the double reference (src/cpu/reference.cc) on cases whose answers
// follow by hand from docs/SPEC.md's rules: ones and arange workloads, N = 1, ties to the smaller
// index, forced blocks first, NaN last, gamma = 1, min_budget > N, the max_budget clamp, forced
// density, and dense attention against a direct softmax.
//
// With the ones workload every logit is scale * head_dim = sqrt(head_dim), so attention is
// uniform over the causal keys: the block scores of row m are all -log(#samples <= m*b), the mass
// of a full key block for row t is b / (t + 1), and every ranking is decided by the tie rules.
//
// Run: ./build/tests/reference_test
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "common/numeric.h"
#include "common/rules.h"
#include "proxyattn/oracle/reference.h"
#include "proxyattn/proxyattn.h"
#include "proxyattn/oracle/compare.h"
#include "proxyattn/oracle/workload.h"

namespace proxyattn {
namespace {

using testing::Workload;
using testing::WorkloadKind;

constexpr double kInf = std::numeric_limits<double>::infinity();

Workload make(std::vector<std::int32_t> lens, WorkloadKind kind, std::int64_t hq = 2,
              std::int64_t hkv = 1, std::int64_t d = 64, DType dtype = DType::kFloat32) {
  testing::WorkloadSpec spec;
  spec.seq_lens = std::move(lens);
  spec.num_qo_heads = hq;
  spec.num_kv_heads = hkv;
  spec.head_dim = d;
  spec.dtype = dtype;
  spec.kind = kind;
  return testing::make_workload(spec);
}

Config sparse_config(int block, int stride, double gamma) {
  Config c;
  c.block_size = block;
  c.stride = stride;
  c.gamma = gamma;
  c.min_budget_tokens = 0;
  c.dense_below_tokens = 0;
  return c;
}

std::vector<reference::SeqPlan> ref_plan(const Workload& w, const Config& c) {
  return reference::plan(testing::operands_of(w, nullptr, c.scale), c);
}

std::vector<std::int32_t> group_row(const reference::SeqPlan& sp, std::int64_t j, std::int64_t m) {
  const std::int64_t nb = sp.num_blocks, tri = nb * (nb + 1) / 2;
  const auto* row = sp.group_order.data() + j * tri + m * (m + 1) / 2;
  return std::vector<std::int32_t>(row, row + m + 1);
}

std::vector<std::int32_t> last_row(const reference::SeqPlan& sp, std::int64_t h) {
  const auto* row = sp.last_order.data() + h * sp.num_blocks;
  return std::vector<std::int32_t>(row, row + sp.num_blocks);
}

std::vector<std::int32_t> count_row(const reference::SeqPlan& sp, std::int64_t h) {
  const auto* row = sp.counts.data() + h * sp.num_blocks;
  return std::vector<std::int32_t>(row, row + sp.num_blocks);
}

// a_h[n] for uniform attention: the mean over the last R = min(b, N) rows of (#keys of block n
// that are <= t) / (t + 1).
std::vector<double> uniform_mass(std::int64_t n_tokens, std::int64_t b) {
  const std::int64_t nb = (n_tokens + b - 1) / b, rows = std::min(b, n_tokens);
  std::vector<double> a(nb, 0.0);
  for (std::int64_t t = n_tokens - rows; t < n_tokens; ++t) {
    for (std::int64_t n = 0; n < nb; ++n) {
      const std::int64_t keys = std::max<std::int64_t>(0, std::min(t + 1, (n + 1) * b) - n * b);
      a[n] += static_cast<double>(keys) / static_cast<double>(t + 1) / static_cast<double>(rows);
    }
  }
  return a;
}

// ---- Ones workload: every score ties ---------------------------------------------------------

TEST(ReferenceOnes, BlockScoresAreUniformLogProbabilities) {
  for (int stride : {1, 4}) {
    const Workload w = make({256}, WorkloadKind::kOnes);
    const auto ref = ref_plan(w, sparse_config(64, stride, 0.95));
    ASSERT_EQ(ref.size(), 1u);
    const auto& sp = ref[0];
    ASSERT_EQ(sp.num_blocks, 4);
    EXPECT_FALSE(sp.dense);
    for (std::int64_t m = 0; m < 4; ++m) {
      // Max over sampled t in block m is at t = m*b, which sees m*b/s + 1 sampled keys.
      const double want = -std::log(static_cast<double>(m * 64 / stride + 1));
      for (std::int64_t n = 0; n < 4; ++n) {
        const double got = sp.block_scores[m * 4 + n];
        if (n <= m) {
          EXPECT_NEAR(got, want, 1e-12) << "stride " << stride << " m " << m << " n " << n;
        } else {
          EXPECT_EQ(got, -kInf) << "above the diagonal: undefined";
        }
      }
    }
  }
}

TEST(ReferenceOnes, MassAndBudgetsByGamma) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  // Rows t = 192..255: full blocks 0..2 each get 64/(t+1); block 3 gets (t-191)/(t+1).
  double x = 0.0;
  for (int k = 193; k <= 256; ++k) x += 1.0 / k;  // ~0.287
  ASSERT_GT(2 * x, 0.5);
  ASSERT_LT(2 * x, 0.6);
  ASSERT_LT(3 * x, 0.9);
  // Sorted masses: x, x, x, 1 - 3x. Top-c sums 0.287, 0.574, 0.861, 1.
  const struct {
    double gamma;
    std::int64_t budget;
  } cases[] = {{0.2, 1}, {0.5, 2}, {0.6, 3}, {0.9, 4}, {0.95, 4}, {1.0, 4}};
  for (const auto& tc : cases) {
    const auto ref = ref_plan(w, sparse_config(64, 4, tc.gamma));
    const auto& sp = ref[0];
    for (std::int64_t h = 0; h < 2; ++h) {
      EXPECT_NEAR(sp.mass[h * 4 + 0], x, 1e-12);
      EXPECT_NEAR(sp.mass[h * 4 + 1], x, 1e-12);
      EXPECT_NEAR(sp.mass[h * 4 + 2], x, 1e-12);
      EXPECT_NEAR(sp.mass[h * 4 + 3], 1.0 - 3.0 * x, 1e-12);
      EXPECT_NEAR(sp.mass_sum[h], 1.0, 1e-12);
      EXPECT_EQ(sp.raw_budgets[h], tc.budget) << "gamma " << tc.gamma;
      EXPECT_EQ(sp.budgets[h], tc.budget) << "gamma " << tc.gamma;
    }
  }
}

TEST(ReferenceOnes, PartialLastBlockMassUsesLastBRows) {
  // N = 200, b = 64: the last block holds 8 tokens, but R = 64 rows (t = 136..199) are used.
  const Workload w = make({200}, WorkloadKind::kOnes, 1, 1);
  const auto ref = ref_plan(w, sparse_config(64, 2, 0.95));
  const std::vector<double> want = uniform_mass(200, 64);
  ASSERT_EQ(ref[0].num_blocks, 4);
  for (int n = 0; n < 4; ++n) EXPECT_NEAR(ref[0].mass[n], want[n], 1e-12) << n;
  // N < b: R = N rows, all of them.
  const Workload w2 = make({37}, WorkloadKind::kOnes, 1, 1);
  const auto ref2 = ref_plan(w2, sparse_config(64, 1, 0.95));
  ASSERT_EQ(ref2[0].num_blocks, 1);
  EXPECT_NEAR(ref2[0].mass[0], 1.0, 1e-12);
}

TEST(ReferenceOnes, TiesGoToSmallerIndexForcedFirst) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  const auto ref = ref_plan(w, sparse_config(64, 4, 0.5));
  const auto& sp = ref[0];
  EXPECT_EQ(group_row(sp, 0, 0), (std::vector<std::int32_t>{0}));
  EXPECT_EQ(group_row(sp, 0, 1), (std::vector<std::int32_t>{0, 1}));
  EXPECT_EQ(group_row(sp, 0, 2), (std::vector<std::int32_t>{0, 2, 1}));
  // Exact last block: forced 0 and 3 first, then a[1] = a[2] tie to the smaller index.
  for (int h = 0; h < 2; ++h) {
    EXPECT_EQ(last_row(sp, h), (std::vector<std::int32_t>{0, 3, 1, 2}));
    // n_h = 2: c[m] = max(min(2, m + 1), forced).
    EXPECT_EQ(count_row(sp, h), (std::vector<std::int32_t>{1, 2, 2, 2}));
  }
}

TEST(ReferenceOnes, NoForcedBlocksRankByScoreThenIndex) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  Config c = sparse_config(64, 4, 0.5);
  c.keep_sink = false;
  c.keep_diagonal = false;
  const auto ref = ref_plan(w, c);
  const auto& sp = ref[0];
  EXPECT_EQ(group_row(sp, 0, 3), (std::vector<std::int32_t>{0, 1, 2, 3}));
  // Last block by a: x, x, x (ties ascending), then the diagonal's 1 - 3x.
  EXPECT_EQ(last_row(sp, 0), (std::vector<std::int32_t>{0, 1, 2, 3}));
  EXPECT_EQ(count_row(sp, 0), (std::vector<std::int32_t>{1, 2, 2, 2}));
  // Only the diagonal kept: it leads every row, then ascending.
  c.keep_diagonal = true;
  const auto ref2 = ref_plan(w, c);
  EXPECT_EQ(group_row(ref2[0], 0, 2), (std::vector<std::int32_t>{2, 0, 1}));
  EXPECT_EQ(last_row(ref2[0], 1), (std::vector<std::int32_t>{3, 0, 1, 2}));
}

TEST(ReferenceOnes, ProxyLastBlockCopiesGroupRow) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  Config c = sparse_config(64, 4, 0.5);
  c.keep_sink = false;
  c.last_block_selection = LastBlockSelection::kProxy;
  const auto ref = ref_plan(w, c);
  // Group row 3 with only the diagonal forced: 3, then 0, 1, 2 (all scores tie).
  EXPECT_EQ(last_row(ref[0], 0), (std::vector<std::int32_t>{3, 0, 1, 2}));
  EXPECT_EQ(last_row(ref[0], 0), group_row(ref[0], 0, 3));
  c.last_block_selection = LastBlockSelection::kExact;
  const auto exact = ref_plan(w, c);
  EXPECT_EQ(last_row(exact[0], 0), (std::vector<std::int32_t>{3, 0, 1, 2}));
}

TEST(ReferenceOnes, GammaOneReachesAllBlocks) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  const auto ref = ref_plan(w, sparse_config(64, 4, 1.0));
  for (int h = 0; h < 2; ++h) {
    EXPECT_EQ(ref[0].budgets[h], 4);
    EXPECT_EQ(count_row(ref[0], h), (std::vector<std::int32_t>{1, 2, 3, 4}));
  }
  // Random data too: gamma = 1 is reached with the relative rule (never stuck below nb by
  // rounding); the budget is the number of blocks with nonzero mass, here all of them.
  const Workload r = make({300}, WorkloadKind::kRandom, 4, 2);
  const auto rr = ref_plan(r, sparse_config(64, 2, 1.0));
  for (int h = 0; h < 4; ++h) EXPECT_EQ(rr[0].budgets[h], 5) << h;
}

TEST(ReferenceOnes, MinBudgetAboveNSelectsEverything) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  Config c = sparse_config(64, 4, 0.2);  // raw budget 1
  c.min_budget_tokens = 1000;            // 16 blocks > nb = 4
  const auto ref = ref_plan(w, c);
  for (int h = 0; h < 2; ++h) {
    EXPECT_EQ(ref[0].raw_budgets[h], 1);
    EXPECT_EQ(ref[0].budgets[h], 4);
    EXPECT_EQ(count_row(ref[0], h), (std::vector<std::int32_t>{1, 2, 3, 4}));
  }
}

TEST(ReferenceOnes, MinBudgetRoundsUpToBlocks) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  Config c = sparse_config(64, 4, 0.2);  // raw budget 1
  c.min_budget_tokens = 65;              // ceil(65 / 64) = 2 blocks
  const auto ref = ref_plan(w, c);
  EXPECT_EQ(ref[0].budgets[0], 2);
}

TEST(ReferenceOnes, MaxBudgetClamps) {
  const Workload w = make({256}, WorkloadKind::kOnes);
  Config c = sparse_config(64, 4, 0.95);  // raw budget 4
  c.max_budget_tokens = 100;              // ceil(100 / 64) = 2 blocks
  const auto ref = ref_plan(w, c);
  for (int h = 0; h < 2; ++h) {
    EXPECT_EQ(ref[0].raw_budgets[h], 4);
    EXPECT_EQ(ref[0].budgets[h], 2);
    EXPECT_EQ(count_row(ref[0], h), (std::vector<std::int32_t>{1, 2, 2, 2}));
  }
  // The forced blocks win over a budget of 1: rows keep sink and diagonal.
  c.max_budget_tokens = 64;
  const auto one = ref_plan(w, c);
  EXPECT_EQ(one[0].budgets[0], 1);
  EXPECT_EQ(count_row(one[0], 0), (std::vector<std::int32_t>{1, 2, 2, 2}));
}

TEST(ReferenceOnes, ForcedDensityCountsCeilWithForcedBlocks) {
  const Workload w = make({512}, WorkloadKind::kOnes);  // nb = 8 at b = 64
  Config c = sparse_config(64, 4, 0.95);
  c.forced_density = 0.5;
  // ceil(0.5 (m + 1)) = 1 1 2 2 3 3 4 4; forced: 1 in row 0, 2 after.
  auto ref = ref_plan(w, c);
  EXPECT_EQ(count_row(ref[0], 0), (std::vector<std::int32_t>{1, 2, 2, 2, 3, 3, 4, 4}));
  EXPECT_EQ(count_row(ref[0], 1), count_row(ref[0], 0));
  c.keep_sink = false;  // only the diagonal: 1 forced
  ref = ref_plan(w, c);
  EXPECT_EQ(count_row(ref[0], 0), (std::vector<std::int32_t>{1, 1, 2, 2, 3, 3, 4, 4}));
  c.keep_diagonal = false;  // nothing forced
  ref = ref_plan(w, c);
  EXPECT_EQ(count_row(ref[0], 0), (std::vector<std::int32_t>{1, 1, 2, 2, 3, 3, 4, 4}));
  c.forced_density = 0.2;  // ceil(0.2 (m + 1)) = 1 1 1 1 1 2 2 2
  ref = ref_plan(w, c);
  EXPECT_EQ(count_row(ref[0], 0), (std::vector<std::int32_t>{1, 1, 1, 1, 1, 2, 2, 2}));
  c.forced_density = 1.0;
  ref = ref_plan(w, c);
  EXPECT_EQ(count_row(ref[0], 0), (std::vector<std::int32_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  // Forced density replaces the budget, even when the budget is smaller or larger.
  c = sparse_config(64, 4, 1.0);
  c.forced_density = 0.25;  // ceil(0.25 (m + 1)) = 1 1 1 1 2 2 2 2; forced 2 from row 1
  ref = ref_plan(w, c);
  EXPECT_EQ(ref[0].budgets[0], 8);
  EXPECT_EQ(count_row(ref[0], 0), (std::vector<std::int32_t>{1, 2, 2, 2, 2, 2, 2, 2}));
}

TEST(ReferenceOnes, SingleToken) {
  for (WorkloadKind kind : {WorkloadKind::kOnes, WorkloadKind::kArange}) {
    const Workload w = make({1}, kind, 4, 2, 16);
    for (auto mode : {LastBlockSelection::kExact, LastBlockSelection::kProxy}) {
      Config c = sparse_config(128, 4, 0.5);
      c.num_proxy_heads = 2;
      c.last_block_selection = mode;
      const auto ref = ref_plan(w, c);
      const auto& sp = ref[0];
      ASSERT_EQ(sp.num_blocks, 1);
      EXPECT_FALSE(sp.dense);
      for (int j = 0; j < 2; ++j) EXPECT_EQ(sp.block_scores[j], 0.0);  // log(1)
      for (int h = 0; h < 4; ++h) {
        EXPECT_DOUBLE_EQ(sp.mass[h], 1.0);
        EXPECT_EQ(sp.budgets[h], 1);
        EXPECT_EQ(sp.counts[h], 1);
        EXPECT_EQ(sp.last_order[h], 0);
      }
    }
  }
}

TEST(Reference, DenseSequencesGetIdentityOrdersAndFullCounts) {
  const Workload w = make({100, 300}, WorkloadKind::kRandom, 4, 2);
  Config c = sparse_config(64, 2, 0.5);
  c.dense_below_tokens = 128;  // the first sequence runs dense, the second sparse
  const auto ref = ref_plan(w, c);
  ASSERT_EQ(ref.size(), 2u);
  EXPECT_TRUE(ref[0].dense);
  EXPECT_FALSE(ref[1].dense);
  EXPECT_EQ(ref[0].num_blocks, 2);
  EXPECT_EQ(ref[1].num_blocks, 5);
  for (int h = 0; h < 4; ++h) {
    EXPECT_EQ(count_row(ref[0], h), (std::vector<std::int32_t>{1, 2}));
    EXPECT_EQ(last_row(ref[0], h), (std::vector<std::int32_t>{0, 1}));
    EXPECT_EQ(ref[0].budgets[h], 2);
  }
  EXPECT_EQ(group_row(ref[0], 0, 1), (std::vector<std::int32_t>{0, 1}));
}

// ---- NaN ---------------------------------------------------------------------------------------

TEST(ReferenceRules, RankingNanLastTiesToSmallerForcedFirst) {
  const double nan = std::nan("");
  using rules::ranks_before;
  EXPECT_TRUE(ranks_before(false, 2.0, 5, false, 1.0, 1));    // higher score first
  EXPECT_TRUE(ranks_before(false, 1.0, 1, false, 1.0, 5));    // tie: smaller index
  EXPECT_FALSE(ranks_before(false, 1.0, 5, false, 1.0, 1));
  EXPECT_TRUE(ranks_before(false, -1e300, 9, false, nan, 0));  // NaN below every number
  EXPECT_TRUE(ranks_before(false, -kInf, 9, false, nan, 0));
  EXPECT_FALSE(ranks_before(false, nan, 0, false, -kInf, 9));
  EXPECT_TRUE(ranks_before(false, nan, 2, false, nan, 3));    // NaN vs NaN: smaller index
  EXPECT_FALSE(ranks_before(false, nan, 3, false, nan, 2));
  EXPECT_TRUE(ranks_before(true, nan, 7, false, 5.0, 0));     // forced first, whatever its score
  EXPECT_FALSE(ranks_before(false, 5.0, 0, true, -kInf, 7));
  EXPECT_TRUE(ranks_before(true, 9.0, 7, true, 0.0, 0));      // forced vs forced: by score
  EXPECT_FALSE(ranks_before(true, 0.0, 0, true, 9.0, 7));
  // Counts.
  EXPECT_EQ(rules::num_forced(0, true, true), 1);  // sink == diagonal
  EXPECT_EQ(rules::num_forced(3, true, true), 2);
  EXPECT_EQ(rules::num_forced(3, false, true), 1);
  EXPECT_EQ(rules::num_forced(0, false, false), 0);
  EXPECT_EQ(rules::count_from_budget(5, 2, 2), 3);  // capped at m + 1
  EXPECT_EQ(rules::count_from_budget(1, 6, 2), 2);  // forced wins
  EXPECT_EQ(rules::count_from_density(0.5, 4, 2), 3);
  EXPECT_EQ(rules::count_from_density(1.0, 4, 2), 5);
  EXPECT_EQ(rules::count_from_density(1e-9, 4, 0), 1);
  EXPECT_EQ(rules::clamp_budget(1, 3, Config::kUnbounded, 10), 3);
  EXPECT_EQ(rules::clamp_budget(9, 0, 4, 10), 4);
  EXPECT_EQ(rules::clamp_budget(9, 20, Config::kUnbounded, 6), 6);
}

TEST(ReferenceNaN, NanKeyAtUnsampledPositionMakesBudgetFull) {
  // With stride 2 the NaN at odd token 131 is never sampled: block scores stay finite. Stage 5
  // sees it in every last-block row, so a_h is NaN and n_h = nb.
  Workload w = make({256}, WorkloadKind::kRandom, 2, 1);
  store_float(w.k.data(), DType::kFloat32, 131 * 64 + 5, std::nanf(""));
  Config c = sparse_config(64, 2, 0.5);
  const auto ref = ref_plan(w, c);
  const auto& sp = ref[0];
  for (double s : sp.block_scores) EXPECT_FALSE(std::isnan(s));
  for (int h = 0; h < 2; ++h) {
    EXPECT_TRUE(std::isnan(sp.mass[h * 4 + 0]));
    EXPECT_EQ(sp.raw_budgets[h], 4);
    EXPECT_EQ(sp.budgets[h], 4);
    // All masses NaN: forced first, then ascending.
    EXPECT_EQ(last_row(sp, h), (std::vector<std::int32_t>{0, 3, 1, 2}));
  }
}

TEST(ReferenceNaN, NanQueryMakesRowScoresNanAndRanksByIndex) {
  // A NaN in the query of token 0 (sampled, head 0) poisons the proxy row of block 0 only.
  Workload w = make({256}, WorkloadKind::kRandom, 2, 1);
  store_float(w.q.data(), DType::kFloat32, 0, std::nanf(""));
  const auto ref = ref_plan(w, sparse_config(64, 4, 0.5));
  const auto& sp = ref[0];
  EXPECT_TRUE(std::isnan(sp.block_scores[0]));
  for (std::int64_t m = 1; m < 4; ++m) {
    for (std::int64_t n = 0; n <= m; ++n) EXPECT_FALSE(std::isnan(sp.block_scores[m * 4 + n]));
  }
  // Stage 5 does not read token 0's query: budgets are finite decisions.
  for (int h = 0; h < 2; ++h) EXPECT_FALSE(std::isnan(sp.mass_sum[h]));
}

// ---- Attention ---------------------------------------------------------------------------------

// Dense causal attention straight from the definition, per sequence, in double.
void direct_softmax(const Workload& w, std::vector<double>& out, std::vector<double>& lse) {
  const std::int64_t T = w.total_tokens, H = w.spec.num_qo_heads, Hk = w.spec.num_kv_heads;
  const std::int64_t D = w.spec.head_dim, r = H / Hk;
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  out.assign(T * H * D, 0.0);
  lse.assign(H * T, -kInf);
  auto ld = [&](const testing::Buffer& b, std::int64_t i) {
    return static_cast<double>(load_float(b.data(), w.spec.dtype, i));
  };
  for (std::size_t i = 0; i + 1 < w.cu_seqlens.size(); ++i) {
    const std::int64_t s0 = w.cu_seqlens[i], s1 = w.cu_seqlens[i + 1];
    for (std::int64_t t = s0; t < s1; ++t) {
      for (std::int64_t h = 0; h < H; ++h) {
        std::vector<double> p;
        double mx = -kInf;
        for (std::int64_t u = s0; u <= t; ++u) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < D; ++d) {
            dot += ld(w.q, (t * H + h) * D + d) * ld(w.k, (u * Hk + h / r) * D + d);
          }
          p.push_back(scale * dot);
          mx = std::max(mx, p.back());
        }
        double sum = 0.0;
        for (double& x : p) sum += (x = std::exp(x - mx));
        lse[h * T + t] = mx + std::log(sum);
        for (std::int64_t u = s0; u <= t; ++u) {
          for (std::int64_t d = 0; d < D; ++d) {
            out[(t * H + h) * D + d] += p[u - s0] / sum * ld(w.v, (u * Hk + h / r) * D + d);
          }
        }
      }
    }
  }
}

TEST(ReferenceAttend, DenseEqualsDirectSoftmax) {
  for (WorkloadKind kind : {WorkloadKind::kArange, WorkloadKind::kRandom}) {
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      const Workload w = make({37, 1, 150}, kind, 4, 2, 16, dtype);
      const testing::Reference ref = testing::reference_dense(w);
      std::vector<double> out, lse;
      direct_softmax(w, out, lse);
      ASSERT_EQ(ref.out.size(), out.size());
      for (std::size_t e = 0; e < out.size(); ++e) {
        ASSERT_NEAR(ref.out[e], out[e], 1e-12) << "element " << e;
      }
      for (std::size_t e = 0; e < lse.size(); ++e) ASSERT_NEAR(ref.lse[e], lse[e], 1e-12) << e;
    }
  }
}

TEST(ReferenceAttend, OnesGiveOnesAndLogCount) {
  const Workload w = make({5, 130}, WorkloadKind::kOnes, 2, 1, 64);
  const testing::Reference ref = testing::reference_dense(w);
  for (double x : ref.out) ASSERT_NEAR(x, 1.0, 1e-12);
  for (std::int64_t h = 0; h < 2; ++h) {
    for (std::int64_t t = 0; t < w.total_tokens; ++t) {
      const std::int64_t pos = t < 5 ? t : t - 5;  // position within its sequence
      // logits all sqrt(64) = 8: lse = 8 + log(pos + 1).
      ASSERT_NEAR(ref.lse[h * w.total_tokens + t], 8.0 + std::log(pos + 1.0), 1e-12);
    }
  }
}

TEST(ReferenceAttend, MaskedAttentionAndEmptyRows) {
  // One sequence of 3 blocks at b = 64; head 0 attends blocks {0, 2} of row 2, nothing in row 1.
  const Workload w = make({150}, WorkloadKind::kRandom, 1, 1, 16);
  const std::int64_t nb = 3;
  std::vector<std::uint8_t> mask(nb * nb, 0);
  mask[0 * nb + 0] = 1;
  mask[2 * nb + 0] = 1;
  mask[2 * nb + 2] = 1;
  const testing::Reference ref = testing::reference_attend(w, 64, mask);
  const std::int64_t D = 16;
  for (std::int64_t t = 64; t < 128; ++t) {  // row 1: empty
    EXPECT_EQ(ref.lse[t], -kInf);
    for (std::int64_t d = 0; d < D; ++d) EXPECT_EQ(ref.out[t * D + d], 0.0);
  }
  // Row 2 equals the direct softmax over keys of blocks 0 and 2 (u <= t).
  const double scale = 0.25;
  for (std::int64_t t : {128, 140, 149}) {
    std::vector<double> p;
    std::vector<std::int64_t> keys;
    for (std::int64_t u = 0; u <= t; ++u) {
      if (u >= 64 && u < 128) continue;
      double dot = 0.0;
      for (std::int64_t d = 0; d < D; ++d) {
        dot += load_float(w.q.data(), DType::kFloat32, t * D + d) *
               static_cast<double>(load_float(w.k.data(), DType::kFloat32, u * D + d));
      }
      p.push_back(scale * dot);
      keys.push_back(u);
    }
    double mx = -kInf, sum = 0.0;
    for (double x : p) mx = std::max(mx, x);
    for (double x : p) sum += std::exp(x - mx);
    EXPECT_NEAR(ref.lse[t], mx + std::log(sum), 1e-12);
    for (std::int64_t d = 0; d < D; ++d) {
      double o = 0.0;
      for (std::size_t e = 0; e < keys.size(); ++e) {
        o += std::exp(p[e] - mx) / sum * load_float(w.v.data(), DType::kFloat32, keys[e] * D + d);
      }
      EXPECT_NEAR(ref.out[t * D + d], o, 1e-12);
    }
  }
}

TEST(ReferenceToPlan, RoundTripsSelection) {
  const Workload w = make({300, 50}, WorkloadKind::kStructured, 4, 2);
  Config c = sparse_config(64, 2, 0.7);
  c.num_proxy_heads = 2;
  const auto ref = ref_plan(w, c);
  testing::Buffer ws(workspace_size(w.shape(), c));
  const Plan p = reference::to_plan(ref, w.shape(), c, ws.workspace(), 0.0f);
  const std::vector<std::uint8_t> mask = p.to_dense();
  std::size_t base = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    const std::int64_t nb = ref[i].num_blocks;
    for (std::int64_t h = 0; h < 4; ++h) {
      std::int64_t selected = 0;
      for (std::int64_t m = 0; m < nb; ++m) {
        const std::vector<std::int32_t> order =
            m == nb - 1 ? last_row(ref[i], h) : group_row(ref[i], h / 2, m);
        const std::int32_t count = ref[i].counts[h * nb + m];
        selected += count;
        for (std::int64_t e = 0; e <= m; ++e) {
          const bool want = e < count;
          EXPECT_EQ(mask[base + (h * nb + m) * nb + order[e]], want ? 1 : 0);
        }
        for (std::int64_t n = m + 1; n < nb; ++n) EXPECT_EQ(mask[base + (h * nb + m) * nb + n], 0);
      }
      EXPECT_FLOAT_EQ(p.density[i * 4 + h],
                      static_cast<float>(static_cast<double>(selected) / (nb * (nb + 1) / 2)));
      EXPECT_EQ(p.budgets[i * 4 + h], ref[i].budgets[h]);
    }
    base += static_cast<std::size_t>(4 * nb * nb);
  }
}

}  // namespace
}  // namespace proxyattn
