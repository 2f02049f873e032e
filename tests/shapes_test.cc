// tests/shapes_test.cc: plan() and attend() on unusual shapes and configurations, against the
// double reference: every head_dim multiple of 8 the CPU takes (8 to 512), GQA ratios 1-8 with
// 1-4 KV heads and every divisor as the proxy-group count, lengths around the block size (1, 2,
// b - 1, b, b + 1, odd primes, tiny last blocks), packed batches with empty sequences, every
// stride dividing b, budget and gamma extremes, dense thresholds, forced density, sink and
// diagonal off, both last-block modes, fp32 and bf16, on every kernel tier the processor has.
// Each case checks plan conformance (docs/SPEC.md section 4), output conformance (docs/STYLE.md
// section 6) and that 1 and 3 threads give the same bytes.
//
// The cases are drawn from a fixed seed, one configuration per case index; the test name spells
// it. PROXYATTN_TEST_LEVEL=full draws 100 cases over longer sequences and larger shapes.
//
// Run: ./build/tests/shapes_test
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "proxyattn/cpu.h"
#include "proxyattn/oracle/compare.h"
#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/reference.h"
#include "proxyattn/oracle/workload.h"
#include "proxyattn/proxyattn.h"
#include "testing/env.h"

namespace proxyattn {
namespace {

using testing::Buffer;
using testing::full_level;
using testing::machine_tiers;
using testing::ScopedIsa;
using testing::Workload;
using testing::WorkloadKind;

struct ShapeCase {
  std::vector<std::int32_t> lens;
  std::int64_t qo = 1, kv = 1, d = 8;
  DType dtype = DType::kFloat32;
  WorkloadKind kind = WorkloadKind::kStructured;
  Config config;
  std::string tier;
  std::uint64_t seed = 0;
};

// Case `index`, drawn from splitmix64 streams of (index, axis).
ShapeCase draw(int index) {
  const bool full = full_level();
  std::uint64_t stream = 0;
  auto next = [&](std::uint64_t n) {
    return testing::mix_seed(static_cast<std::uint64_t>(index) * 1009 + 17, stream++) % n;
  };
  ShapeCase c;
  Config& cfg = c.config;
  cfg.block_size = next(2) == 0 ? 64 : 128;
  const std::int32_t b = cfg.block_size;
  static const int kDims[] = {8, 16, 24, 40, 72, 96, 136, 200, 256, 512};
  c.d = kDims[next(full ? 10 : 7)];
  static const int kRatios[] = {1, 2, 3, 5, 7, 8};
  c.kv = 1 + static_cast<std::int64_t>(next(full ? 4 : 2));
  c.qo = c.kv * kRatios[next(full ? 6 : 4)];
  std::vector<int> divisors, strides;
  for (int g = 1; g <= c.kv; ++g) {
    if (c.kv % g == 0) divisors.push_back(g);
  }
  for (int s = 1; s <= b; ++s) {
    if (b % s == 0) strides.push_back(s);
  }
  cfg.num_proxy_heads = divisors[next(divisors.size())];
  cfg.stride = strides[next(strides.size())];
  const std::vector<std::int32_t> pool = {0, 1, 2, b - 1, b, b + 1, 2 * b + 1, 131, 3 * b - 2};
  const std::vector<std::int32_t> long_pool = {257, 389, 5 * b - 3, 7 * b + 1, 601};
  const int batch = 1 + static_cast<int>(next(full ? 5 : 3));
  std::int64_t total = 0;
  for (int i = 0; i < batch; ++i) {
    const bool use_long = full && next(3) == 0;
    c.lens.push_back(use_long ? long_pool[next(long_pool.size())] : pool[next(pool.size())]);
    total += c.lens.back();
  }
  if (total == 0) c.lens.push_back(b + 1);
  c.dtype = next(2) == 0 ? DType::kFloat32 : DType::kBFloat16;
  static const WorkloadKind kKinds[] = {WorkloadKind::kRandom, WorkloadKind::kStructured,
                                        WorkloadKind::kOnes, WorkloadKind::kArange};
  c.kind = kKinds[next(4)];
  static const double kGammas[] = {1e-6, 0.5, 0.9, 0.95, 0.999999, 1.0};
  cfg.gamma = kGammas[next(6)];
  const std::int64_t mins[] = {0, 1, b, 3 * b - 1, 2048};
  cfg.min_budget_tokens = mins[next(5)];
  const std::int64_t maxes[] = {Config::kUnbounded, 1, b, 2 * b + 1};
  cfg.max_budget_tokens = std::max(maxes[next(4)], cfg.min_budget_tokens);
  if (cfg.max_budget_tokens == 0) cfg.max_budget_tokens = 1;
  const std::int64_t dense_below[] = {0, Config::kAuto, b, 2 * b};
  cfg.dense_below_tokens = dense_below[next(4)];
  cfg.keep_sink = next(3) != 0;
  cfg.keep_diagonal = next(3) != 0;
  cfg.last_block_selection = next(2) == 0 ? LastBlockSelection::kExact : LastBlockSelection::kProxy;
  static const double kDensities[] = {0.0, 0.0, 0.01, 0.3, 1.0};
  cfg.forced_density = kDensities[next(5)];
  const std::vector<std::string> tiers = machine_tiers(/*with_amx=*/false);
  c.tier = tiers[next(tiers.size())];
  c.seed = next(1000);
  return c;
}

std::string describe(const ShapeCase& c) {
  std::ostringstream os;
  os << c.tier << "_N";
  for (std::size_t i = 0; i < c.lens.size(); ++i) os << (i ? "x" : "") << c.lens[i];
  const Config& f = c.config;
  os << "_h" << c.qo << "by" << c.kv << "_d" << c.d << "_" << to_string(c.dtype) << "_"
     << testing::to_string(c.kind) << "_b" << f.block_size << "_s" << f.stride << "_g"
     << f.num_proxy_heads << "_gamma" << f.gamma << "_min" << f.min_budget_tokens << "_max"
     << (f.max_budget_tokens == Config::kUnbounded ? std::string("none")
                                                   : std::to_string(f.max_budget_tokens))
     << "_dense" << f.dense_below_tokens << "_sink" << f.keep_sink << "_diag" << f.keep_diagonal
     << "_" << to_string(f.last_block_selection) << "_density" << f.forced_density;
  return os.str();
}

class Shapes : public ::testing::TestWithParam<int> {};

TEST_P(Shapes, PlanAndOutputConformAcrossThreads) {
  const ShapeCase c = draw(GetParam());
  SCOPED_TRACE(describe(c));
  ScopedIsa isa(c.tier);
  const Workload w = testing::make_workload(c.lens, c.qo, c.kv, c.d, c.dtype, c.kind, c.seed);
  std::vector<std::vector<std::uint8_t>> masks;
  std::vector<Buffer> outs, lses;
  for (int threads : {1, 3}) {
    Buffer ws(workspace_size(w.shape(), c.config));
    testing::Output out = testing::make_output(w);
    const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c.config, ws.workspace(),
                        Runtime{threads});
    attend(w.q_view(), w.k_view(), w.v_view(), p, out.o_view, &out.lse_view, Runtime{threads});
    masks.push_back(p.to_dense());
    if (threads == 1) {
      const auto ref = reference::plan(testing::operands_of(w, nullptr), c.config);
      const PlanConformance r = check_plan(ref, p, c.config);
      EXPECT_TRUE(r.ok) << r.first_failure;
      const testing::Reference oref = testing::reference_attend(w, c.config.block_size, masks[0]);
      const OutputError e = compare_output(testing::operands_of(w, &out), oref.out, oref.lse);
      const double bound = oref.bound(c.dtype);
      EXPECT_EQ(e.non_finite, 0);
      EXPECT_TRUE(output_conforms(e, bound, c.dtype))
          << "rel error " << e.rel_error << " > bound " << bound << ", lse error "
          << e.lse_max_abs_error << "\n"
          << testing::describe_mismatches(w, out, oref, bound * 10);
    }
    outs.push_back(std::move(out.o));
    lses.push_back(std::move(out.lse));
  }
  EXPECT_EQ(masks[1], masks[0]) << "the plan depends on the thread count";
  EXPECT_EQ(std::memcmp(outs[1].data(), outs[0].data(), outs[0].size()), 0)
      << "O depends on the thread count";
  EXPECT_EQ(std::memcmp(lses[1].data(), lses[0].data(), lses[0].size()), 0)
      << "LSE depends on the thread count";
}

std::string case_name(const ::testing::TestParamInfo<int>& info) {
  std::string name = std::to_string(info.param) + "_" + describe(draw(info.param));
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

INSTANTIATE_TEST_SUITE_P(Draws, Shapes, ::testing::Range(0, full_level() ? 100 : 16), case_name);

}  // namespace
}  // namespace proxyattn
