// tests/prefill_test.cc: proxyattn::prefill end to end on packed varlen batches (dense fallback
// for short sequences, sparse for long ones), its plan statistics, prefill == plan + attend,
// dense() against the reference, the needle workload (exact last-block selection finds the
// needles), thread-count independence and NaN propagation.
//
// Run: ./build/tests/prefill_test
// Variants:
//   PrefillVarlen/*   block x last-block mode x dtype
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
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

namespace proxyattn {

namespace {

using testing::Buffer;
using testing::make_workload;
using testing::Output;
using testing::Reference;
using testing::Workload;
using testing::WorkloadKind;

void expect_matches(const Workload& w, const Output& out, const Reference& ref) {
  const OutputError e = compare_output(testing::operands_of(w, &out), ref.out, ref.lse);
  const double tol = ref.bound(w.spec.dtype);  // 2x the same-precision naive error + noise
  EXPECT_EQ(e.non_finite, 0) << "NaN/Inf where the reference is finite";
  EXPECT_TRUE(output_conforms(e, tol, w.spec.dtype))
      << "rel error " << e.rel_error << " > bound " << tol << " (naive " << ref.naive.rel_error
      << ")\n" << testing::describe_mismatches(w, out, ref, tol * 10);
  EXPECT_LE(e.lse_max_abs_error, 1e-3);
  const std::int64_t n = w.total_tokens * w.spec.num_qo_heads * w.spec.head_dim;
  for (std::int64_t i = 0; i < n; ++i) {
    ASSERT_TRUE(std::isfinite(load_float(out.o.data(), w.spec.dtype, i))) << "O element " << i;
  }
}

bool same_bytes(const Buffer& a, const Buffer& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---- Varlen end to end -------------------------------------------------------------------------

using VarlenParam = std::tuple<int, LastBlockSelection, DType>;

class PrefillVarlen : public ::testing::TestWithParam<VarlenParam> {};

TEST_P(PrefillVarlen, EndToEnd) {
  const auto [block, mode, dtype] = GetParam();
  const std::vector<std::int32_t> lens = {37, 900, 1, 200, 1024, 0, 130};
  const Workload w = make_workload(lens, 4, 2, 64, dtype, WorkloadKind::kStructured, 5);
  Config c;
  c.block_size = block;
  c.stride = 4;
  c.gamma = 0.9;
  c.num_proxy_heads = 2;
  c.min_budget_tokens = 256;  // dense_below = max(2b, 256) = 256
  c.last_block_selection = mode;
  ASSERT_EQ(c.dense_below(), 256);
  Buffer ws(workspace_size(w.shape(), c));
  Output out = testing::make_output(w);
  const Plan p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(),
                         out.o_view, &out.lse_view, Runtime{2});

  // Output against the reference run on this plan.
  expect_matches(w, out, testing::reference_attend(w, block, p.to_dense()));

  // The plan conforms to the reference's.
  const auto ref = reference::plan(testing::operands_of(w, nullptr), c);
  const PlanConformance r = check_plan(ref, p, c);
  EXPECT_TRUE(r.ok) << r.first_failure;

  // Stats: dense sequences are complete, sparse ones respect the budget clamps.
  const Plan::Stats s = p.stats();
  const std::int64_t min_blocks = c.min_budget_blocks();
  for (std::size_t i = 0; i < lens.size(); ++i) {
    const std::int64_t nb = p.layout.num_blocks[i];
    const bool dense = lens[i] <= 256;
    EXPECT_EQ(p.layout.is_dense[i] != 0, dense) << "sequence " << i;
    for (std::int64_t h = 0; h < 4; ++h) {
      const std::size_t k = i * 4 + static_cast<std::size_t>(h);
      if (dense) {
        EXPECT_EQ(s.budgets[k], nb) << "sequence " << i << " head " << h;
        EXPECT_EQ(s.density[k], 1.0f) << "sequence " << i << " head " << h;
      } else {
        EXPECT_GE(s.budgets[k], std::min(min_blocks, nb));
        EXPECT_LE(s.budgets[k], nb);
        EXPECT_GT(s.density[k], 0.0f);
        EXPECT_LE(s.density[k], 1.0f);
      }
    }
  }
  EXPECT_GT(s.density_weighted, 0.0);
  EXPECT_LE(s.density_weighted, 1.0);

  // prefill == plan + attend, bit for bit.
  Buffer ws2(workspace_size(w.shape(), c));
  const Plan p2 = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws2.workspace(), Runtime{2});
  Output out2 = testing::make_output(w);
  attend(w.q_view(), w.k_view(), w.v_view(), p2, out2.o_view, &out2.lse_view, Runtime{2});
  EXPECT_EQ(p.to_dense(), p2.to_dense());
  EXPECT_TRUE(same_bytes(out.o, out2.o));
  EXPECT_TRUE(same_bytes(out.lse, out2.lse));
}

std::string varlen_name(const ::testing::TestParamInfo<VarlenParam>& info) {
  return "b" + std::to_string(std::get<0>(info.param)) + "_" + to_string(std::get<1>(info.param)) +
         "_" + to_string(std::get<2>(info.param));
}

INSTANTIATE_TEST_SUITE_P(
    Varlen, PrefillVarlen,
    ::testing::Combine(::testing::Values(64, 128),
                       ::testing::Values(LastBlockSelection::kExact, LastBlockSelection::kProxy),
                       ::testing::Values(DType::kFloat32, DType::kBFloat16)),
    varlen_name);

// ---- Dense --------------------------------------------------------------------------------------

TEST(Prefill, DenseMatchesReference) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    for (std::int64_t d : {64, 128, 40}) {
      const Workload w = make_workload({300, 1, 129, 64}, 4, 1, d, dtype, WorkloadKind::kRandom, 6);
      Output out = testing::make_output(w);
      dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), out.o_view, &out.lse_view, 0.0f,
            Runtime{2});
      SCOPED_TRACE(std::string(to_string(dtype)) + " d" + std::to_string(d));
      expect_matches(w, out, testing::reference_dense(w));
    }
  }
}

TEST(Prefill, AllDenseFallbackEqualsDense) {
  // Every sequence is at most dense_below: prefill runs dense attention. At b = 128 it visits the
  // same tiles as dense(), so the results are the same bits.
  const Workload w = make_workload({37, 300, 1, 2048}, 4, 2, 64, DType::kBFloat16, WorkloadKind::kStructured, 8);
  const Config c;  // defaults: dense_below = 2048
  Buffer ws(workspace_size(w.shape(), c));
  Output sparse = testing::make_output(w), full = testing::make_output(w);
  const Plan p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(),
                         sparse.o_view, &sparse.lse_view, Runtime{2});
  dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), full.o_view, &full.lse_view, 0.0f,
        Runtime{2});
  EXPECT_EQ(p.stats().density_weighted, 1.0);
  EXPECT_TRUE(same_bytes(sparse.o, full.o));
  EXPECT_TRUE(same_bytes(sparse.lse, full.lse));
}

// ---- Needles ------------------------------------------------------------------------------------

TEST(Prefill, ExactLastBlockSelectsNeedles) {
  // The structured workload plants 2 needle keys per sequence that only the last 128 queries
  // look for. With exact last-block selection, the last query block of every head ranks key
  // blocks by its own attention mass, so it selects the needles' blocks. The count includes the
  // forced blocks (docs/SPEC.md stage 6: c = max(min(n_h, m + 1), forced)), so sharp heads whose
  // gamma budget is 2-3 blocks would spend it on the sink and the diagonal; a minimum budget of
  // 4 blocks (as in docs/SPEC.md's needle experiment, 256 tokens at b = 64) leaves room for both.
  for (int block : {64, 128}) {
    const Workload w = make_workload({1024, 700}, 4, 1, 64, DType::kBFloat16, WorkloadKind::kStructured, 9);
    ASSERT_EQ(w.needles.size(), 4u);
    Config c;
    c.block_size = block;
    c.gamma = 0.9;
    c.min_budget_tokens = 4 * block;
    c.dense_below_tokens = 0;
    c.last_block_selection = LastBlockSelection::kExact;
    Buffer ws(workspace_size(w.shape(), c));
    Output out = testing::make_output(w);
    const Plan p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(),
                           out.o_view, &out.lse_view, Runtime{2});
    const std::vector<std::uint8_t> mask = p.to_dense();
    std::vector<std::size_t> base = {0};
    for (std::int64_t i = 0; i < 2; ++i) {
      const std::int64_t nb = p.layout.num_blocks[i];
      base.push_back(base.back() + static_cast<std::size_t>(4 * nb * nb));
    }
    for (const testing::Needle& needle : w.needles) {
      const std::int64_t nb = p.layout.num_blocks[needle.seq], n = needle.position / block;
      for (std::int64_t h = 0; h < 4; ++h) {
        EXPECT_EQ(mask[base[needle.seq] + (h * nb + nb - 1) * nb + n], 1)
            << "block " << block << ": head " << h << " of sequence " << needle.seq
            << " misses the needle at " << needle.position << " (key block " << n << ")";
      }
    }
    expect_matches(w, out, testing::reference_attend(w, block, mask));
  }
}

// ---- Threads ------------------------------------------------------------------------------------

TEST(Prefill, ThreadCountIndependence) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const Workload w = make_workload({37, 800, 250}, 7, 1, 64, dtype, WorkloadKind::kStructured, 10);
    Config c;
    c.block_size = 64;
    c.min_budget_tokens = 64;
    c.gamma = 0.85;
    std::vector<Output> outs;
    std::vector<std::vector<std::uint8_t>> masks;
    std::vector<std::vector<std::int32_t>> budgets;
    for (int threads : {1, 2, 3}) {
      Buffer ws(workspace_size(w.shape(), c));
      outs.push_back(testing::make_output(w));
      const Plan p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(),
                             outs.back().o_view, &outs.back().lse_view, Runtime{threads});
      masks.push_back(p.to_dense());
      budgets.push_back(p.stats().budgets);
    }
    for (std::size_t e = 1; e < outs.size(); ++e) {
      EXPECT_EQ(masks[e], masks[0]) << e + 1 << " threads, " << to_string(dtype);
      EXPECT_EQ(budgets[e], budgets[0]) << e + 1 << " threads, " << to_string(dtype);
      EXPECT_TRUE(same_bytes(outs[e].o, outs[0].o)) << e + 1 << " threads, " << to_string(dtype);
      EXPECT_TRUE(same_bytes(outs[e].lse, outs[0].lse)) << e + 1 << " threads";
    }
  }
}

// ---- NaN ----------------------------------------------------------------------------------------

// O is NaN exactly where the reference (on the same plan) is NaN; elsewhere it matches.
void expect_nan_pattern(const Workload& w, const Output& out, const Reference& ref,
                        std::int64_t* nan_count) {
  const std::int64_t T = w.total_tokens, H = w.spec.num_qo_heads, D = w.spec.head_dim;
  const double tol = output_tolerance(w.spec.dtype, D);
  std::int64_t count = 0;
  double err2 = 0.0, ref2 = 0.0;
  for (std::int64_t i = 0; i < T * H * D; ++i) {
    const double x = load_float(out.o.data(), w.spec.dtype, i), y = ref.out[i];
    ASSERT_EQ(std::isnan(x), std::isnan(y)) << "element " << i << ": got " << x << ", want " << y;
    ASSERT_FALSE(std::isinf(x)) << "element " << i;
    if (std::isnan(y)) {
      ++count;
      continue;
    }
    err2 += (x - y) * (x - y);
    ref2 += y * y;
  }
  EXPECT_LE(std::sqrt(err2 / ref2), tol * std::sqrt(static_cast<double>(H)));
  const auto* lse = static_cast<const float*>(out.lse.data());
  for (std::int64_t i = 0; i < H * T; ++i) {
    ASSERT_EQ(std::isnan(lse[i]), std::isnan(ref.lse[i])) << "LSE element " << i;
  }
  *nan_count = count;
}

TEST(PrefillNaN, NanInValuePropagatesLikeDense) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    Workload w = make_workload({100, 700}, 4, 2, 64, dtype, WorkloadKind::kStructured, 12);
    // NaN in v of token 300 of sequence 1 (absolute 400), KV head 1, dim 3.
    store_float(w.v.data(), dtype, (400 * 2 + 1) * 64 + 3, std::nanf(""));
    Config c;
    c.block_size = 64;
    c.min_budget_tokens = 0;
    c.gamma = 0.8;
    Buffer ws(workspace_size(w.shape(), c));
    Output out = testing::make_output(w);
    Plan p;
    ASSERT_NO_THROW(p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c,
                                ws.workspace(), out.o_view, &out.lse_view, Runtime{2}));
    // V does not enter the plan: it equals the plan of the clean input.
    std::int64_t nans = 0;
    expect_nan_pattern(w, out, testing::reference_attend(w, 64, p.to_dense()), &nans);
    // Only dim 3 of heads 2 and 3 (KV head 1), rows t >= 400 of sequence 1 that selected the
    // needle's block, can be NaN; the diagonal rows of that block always do.
    EXPECT_GT(nans, 0);
    EXPECT_LE(nans, 2 * 400);
    for (std::int64_t t = 0; t < w.total_tokens; ++t) {
      for (std::int64_t h = 0; h < 4; ++h) {
        for (std::int64_t d = 0; d < 64; ++d) {
          const bool nan = std::isnan(load_float(out.o.data(), dtype, (t * 4 + h) * 64 + d));
          if (nan) {
            ASSERT_TRUE(t >= 400 && h >= 2 && d == 3) << "token " << t << " head " << h << " dim " << d;
          }
        }
      }
    }
    // Dense attention puts NaN at every row t >= 400 of those heads: the sparse plan's NaNs are
    // a subset, and exactly the dense ones where the block is selected.
    Output full = testing::make_output(w);
    dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), full.o_view, &full.lse_view);
    for (std::int64_t t = 400; t < 800; ++t) {
      for (std::int64_t h = 2; h < 4; ++h) {
        EXPECT_TRUE(std::isnan(load_float(full.o.data(), dtype, (t * 4 + h) * 64 + 3)));
      }
    }
  }
}

TEST(PrefillNaN, NanInQueryOrKeyDoesNotCrash) {
  for (int where = 0; where < 2; ++where) {
    Workload w = make_workload({300, 600}, 4, 2, 64, DType::kFloat32, WorkloadKind::kRandom, 13);
    if (where == 0) {
      store_float(w.q.data(), DType::kFloat32, (850 * 4 + 2) * 64 + 1, std::nanf(""));
    } else {
      store_float(w.k.data(), DType::kFloat32, (500 * 2 + 0) * 64 + 9, std::nanf(""));
    }
    Config c;
    c.block_size = 64;
    c.min_budget_tokens = 0;
    Buffer ws(workspace_size(w.shape(), c));
    Output out = testing::make_output(w);
    Plan p;
    ASSERT_NO_THROW(p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c,
                                ws.workspace(), out.o_view, &out.lse_view, Runtime{2}));
    std::int64_t nans = 0;
    expect_nan_pattern(w, out, testing::reference_attend(w, 64, p.to_dense()), &nans);
    EXPECT_GT(nans, 0);
    // Sequence 0 is untouched by the NaN in sequence 1.
    for (std::int64_t i = 0; i < 300 * 4 * 64; ++i) {
      ASSERT_TRUE(std::isfinite(load_float(out.o.data(), DType::kFloat32, i)));
    }
    // The poisoned heads take every block of sequence 1 (a_h is NaN).
    if (where == 0) {
      EXPECT_EQ(p.budgets[4 + 2], p.layout.num_blocks[1]);
    } else {
      EXPECT_EQ(p.budgets[4 + 0], p.layout.num_blocks[1]);
      EXPECT_EQ(p.budgets[4 + 1], p.layout.num_blocks[1]);
    }
  }
}

}  // namespace
}  // namespace proxyattn
