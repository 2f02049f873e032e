// tests/cpu_kernels_test.cc: the CPU attention micro-kernels under every dispatch tier this
// processor has (scalar, avx512, avx512bf16, amx), forced through PROXYATTN_CPU_ISA, against the
// double reference with the docs/STYLE.md pass rule (2x the same-precision naive error + noise).
// Odd sequence lengths, head_dim 64 / 128 / other multiples of 8, GQA 1 / 4 / 7, blocks 64 / 128,
// sparse masks, rows whose keys are all masked, NaN in a key a row cannot see, and bitwise
// independence of the thread count; forced density 1 equals dense bit for bit.
//
// Run: ./build/tests/cpu_kernels_test     (PROXYATTN_TEST_LEVEL=full widens the sweep)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "proxyattn/cpu.h"
#include "common/numeric.h"
#include "proxyattn/oracle/compare.h"
#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/workload.h"
#include "proxyattn/proxyattn.h"
#include "testing/env.h"

namespace proxyattn {
namespace {

using testing::Buffer;
using testing::full_level;
using testing::machine_tiers;
using testing::ScopedIsa;
using testing::make_workload;
using testing::Output;
using testing::Reference;
using testing::Workload;
using testing::WorkloadKind;

void expect_conforms(const Workload& w, const Output& out, const Reference& ref,
                     const std::string& what) {
  const OutputError e = compare_output(testing::operands_of(w, &out), ref.out, ref.lse);
  const double bound = ref.bound(w.spec.dtype);
  EXPECT_EQ(e.non_finite, 0) << what << ": NaN/Inf where the reference is finite";
  EXPECT_TRUE(output_conforms(e, bound, w.spec.dtype))
      << what << ": rel error " << e.rel_error << " > bound " << bound << " (naive "
      << ref.naive.rel_error << ")\n"
      << testing::describe_mismatches(w, out, ref, bound * 10);
  EXPECT_LE(e.lse_max_abs_error, 1e-3) << what;
}

bool same_bytes(const Buffer& a, const Buffer& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size()) == 0;
}

// ---- Sweep over tiers x dtype x head_dim x block x GQA ------------------------------------------

using SweepParam = std::tuple<std::string, DType, int, int, int>;  // tier, dtype, d, block, gqa

class KernelSweep : public ::testing::TestWithParam<SweepParam> {};

std::string sweep_name(const ::testing::TestParamInfo<SweepParam>& info) {
  const auto& [tier, dtype, d, block, gqa] = info.param;
  std::ostringstream os;
  os << tier << "_" << to_string(dtype) << "_d" << d << "_b" << block << "_gqa" << gqa;
  return os.str();
}

TEST_P(KernelSweep, SparseAndDenseMatchReference) {
  const auto& [tier, dtype, d, block, gqa] = GetParam();
  const std::vector<std::string> tiers = machine_tiers();
  if (std::find(tiers.begin(), tiers.end(), tier) == tiers.end()) {
    GTEST_SKIP() << "this processor lacks " << tier;
  }
  ScopedIsa isa(tier);
  const std::int64_t hk = gqa == 7 ? 1 : 2, hq = hk * gqa;
  // Odd lengths: a partial last block, a sequence shorter than one block, one token.
  const Workload w = make_workload({block + 37, 1, block / 2 + 3, 3 * block + 5}, hq, hk, d, dtype,
                                   WorkloadKind::kStructured, 100 + d + gqa);
  Buffer ws;
  const Plan sparse_plan = testing::random_mask_plan(w.shape(), block, 0.4, 5, ws);
  Output sparse = testing::make_output(w);
  attend(w.q_view(), w.k_view(), w.v_view(), sparse_plan, sparse.o_view, &sparse.lse_view,
         Runtime{2});
  expect_conforms(w, sparse, testing::reference_attend(w, block, sparse_plan.to_dense()),
                  "sparse " + tier);

  Output full = testing::make_output(w);
  dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), full.o_view, &full.lse_view, 0.0f, Runtime{2});
  expect_conforms(w, full, testing::reference_dense(w), "dense " + tier);

  // Thread-count independence, bit for bit.
  Output one = testing::make_output(w), three = testing::make_output(w);
  attend(w.q_view(), w.k_view(), w.v_view(), sparse_plan, one.o_view, &one.lse_view, Runtime{1});
  attend(w.q_view(), w.k_view(), w.v_view(), sparse_plan, three.o_view, &three.lse_view,
         Runtime{3});
  EXPECT_TRUE(same_bytes(one.o, sparse.o) && same_bytes(three.o, sparse.o)) << tier;
  EXPECT_TRUE(same_bytes(one.lse, sparse.lse) && same_bytes(three.lse, sparse.lse)) << tier;

  // Every block selected over 128-key blocks is the dense kernel, bit for bit.
  if (block == 128) {
    Buffer ws_all;
    const Plan all = testing::random_mask_plan(w.shape(), block, 1.0, 5, ws_all);
    Output every = testing::make_output(w);
    attend(w.q_view(), w.k_view(), w.v_view(), all, every.o_view, &every.lse_view, Runtime{2});
    EXPECT_TRUE(same_bytes(every.o, full.o)) << tier;
    EXPECT_TRUE(same_bytes(every.lse, full.lse)) << tier;
  }
}

std::vector<SweepParam> sweep_params() {
  std::vector<SweepParam> out;
  const std::vector<int> dims = full_level() ? std::vector<int>{8, 40, 64, 128, 200, 256}
                                             : std::vector<int>{40, 64, 128, 200};
  for (const char* tier : {"scalar", "avx512", "avx512bf16", "amx"}) {
    for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
      for (int d : dims) {
        for (int block : {64, 128}) {
          for (int gqa : {1, 4, 7}) {
            // Quick level: every (tier, dtype, d, block) once, GQA rotating.
            if (!full_level() && gqa != std::vector<int>{1, 4, 7}[(d / 8 + block / 64) % 3]) continue;
            out.emplace_back(tier, dtype, d, block, gqa);
          }
        }
      }
    }
  }
  return out;
}

INSTANTIATE_TEST_SUITE_P(Tiers, KernelSweep, ::testing::ValuesIn(sweep_params()), sweep_name);

// ---- Edge cases, per tier ------------------------------------------------------------------------

class KernelEdges : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::vector<std::string> tiers = machine_tiers();
    if (std::find(tiers.begin(), tiers.end(), GetParam()) == tiers.end()) {
      GTEST_SKIP() << "this processor lacks " << GetParam();
    }
  }
};

// A NaN in V at a key some rows of its (diagonal) block cannot see reaches only the rows that
// see it: the kernels stop each row's P V at its last visible key, also inside a bf16 pair.
TEST_P(KernelEdges, NanInInvisibleKeyStaysInvisible) {
  ScopedIsa isa(GetParam());
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    for (int offset : {16, 17}) {  // even and odd position inside the block (pair lo / hi)
      Workload w = make_workload({300}, 2, 1, 64, dtype, WorkloadKind::kRandom, 3);
      const std::int64_t key = 128 + offset;
      for (std::int64_t c = 0; c < 64; ++c) {
        if (dtype == DType::kFloat32) {
          static_cast<float*>(w.v.data())[key * 64 + c] = std::nanf("");
        } else {
          static_cast<std::uint16_t*>(w.v.data())[key * 64 + c] = 0x7fc0;
        }
      }
      Output out = testing::make_output(w);
      dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), out.o_view, &out.lse_view);
      for (std::int64_t t = 0; t < 300; ++t) {
        for (std::int64_t h = 0; h < 2; ++h) {
          const std::int64_t i = (t * 2 + h) * 64;
          bool nan = false;
          if (dtype == DType::kFloat32) {
            nan = std::isnan(static_cast<const float*>(out.o.data())[i]);
          } else {
            const std::uint16_t bits = static_cast<const std::uint16_t*>(out.o.data())[i];
            nan = (bits & 0x7f80) == 0x7f80 && (bits & 0x7f) != 0;
          }
          ASSERT_EQ(nan, t >= key) << GetParam() << " " << to_string(dtype) << " token " << t
                                   << " head " << h << " offset " << offset;
        }
      }
    }
  }
}

// Rows with no selected key get O = 0 and LSE = -inf; rows with keys match the reference.
// V close to the largest float (and bf16): O is a convex combination of V rows, so it stays finite
// as in the reference, although the online softmax sums p * v before dividing. Dense and sparse
// attention, with a second KV head of ordinary values that must keep its exact bits.
TEST_P(KernelEdges, HugeValuesGiveFiniteOutput) {
  ScopedIsa isa(GetParam());
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    Workload w = make_workload({300, 45}, 4, 2, 40, dtype, WorkloadKind::kRandom, 7);
    const Workload plain = make_workload({300, 45}, 4, 2, 40, dtype, WorkloadKind::kRandom, 7);
    for (std::int64_t t = 0; t < w.total_tokens; ++t) {
      for (std::int64_t c = 0; c < 40; ++c) {  // KV head 0 only: +-3e38, 1.5e38 by position
        const std::int64_t i = (t * 2 + 0) * 40 + c;
        const float x = (t + c) % 3 == 0 ? 3e38f : (t + c) % 3 == 1 ? -3e38f : 1.5e38f;
        if (dtype == DType::kFloat32) {
          static_cast<float*>(w.v.data())[i] = x;
        } else {
          static_cast<std::uint16_t*>(w.v.data())[i] = float_to_bf16(x);
        }
      }
    }
    Output full = testing::make_output(w), full_plain = testing::make_output(plain);
    dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), full.o_view, &full.lse_view);
    dense(plain.q_view(), plain.k_view(), plain.v_view(), plain.seqlens(), full_plain.o_view,
          &full_plain.lse_view);
    expect_conforms(w, full, testing::reference_dense(w), "dense " + GetParam());
    Buffer ws;
    const Plan sparse_plan = testing::random_mask_plan(w.shape(), 64, 0.5, 3, ws);
    Output sparse = testing::make_output(w);
    attend(w.q_view(), w.k_view(), w.v_view(), sparse_plan, sparse.o_view, &sparse.lse_view);
    expect_conforms(w, sparse, testing::reference_attend(w, 64, sparse_plan.to_dense()),
                    "sparse " + GetParam());
    // Query heads 2 and 3 read KV head 1, whose V is untouched: the same bytes as without.
    const std::size_t elem = dtype == DType::kFloat32 ? 4 : 2;
    for (std::int64_t t = 0; t < w.total_tokens; ++t) {
      const std::size_t at = static_cast<std::size_t>((t * 4 + 2) * 40) * elem;
      ASSERT_EQ(std::memcmp(static_cast<const char*>(full.o.data()) + at,
                            static_cast<const char*>(full_plain.o.data()) + at, 2 * 40 * elem), 0)
          << "token " << t;
    }
  }
}

// V of denormal size (bf16 and fp32 around 1e-39): vdpbf16ps reads denormals as zero, which
// must not flush O to zero. Held to the relative bound itself, without the 16-bit absolute floor
// that any output this small would meet.
TEST_P(KernelEdges, DenormalValuesAreNotFlushed) {
  ScopedIsa isa(GetParam());
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    Workload w = make_workload({200}, 2, 1, 64, dtype, WorkloadKind::kRandom, 9);
    for (std::int64_t i = 0; i < w.total_tokens * 64; ++i) {
      const float x = 1e-39f * static_cast<float>((i * 7919) % 1000 - 500) / 500.0f;
      if (dtype == DType::kFloat32) {
        static_cast<float*>(w.v.data())[i] = x;
      } else {
        static_cast<std::uint16_t*>(w.v.data())[i] = float_to_bf16(x);
      }
    }
    Output out = testing::make_output(w);
    dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), out.o_view, &out.lse_view);
    const Reference ref = testing::reference_dense(w);
    const OutputError e = compare_output(testing::operands_of(w, &out), ref.out, ref.lse);
    EXPECT_LE(e.rel_error, ref.bound(dtype)) << to_string(dtype) << " naive " << ref.naive.rel_error;
  }
}

TEST_P(KernelEdges, EmptyRowsAndEmptyQueryBlocks) {
  ScopedIsa isa(GetParam());
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const Workload w = make_workload({200}, 2, 1, 64, dtype, WorkloadKind::kRandom, 9);
    Buffer ws;
    Plan p = testing::random_mask_plan(w.shape(), 64, 0.5, 1, ws);
    // Head 1, query block 2 selects nothing.
    p.counts[p.layout.head_index(0, 1, 2)] = 0;
    Output out = testing::make_output(w);
    attend(w.q_view(), w.k_view(), w.v_view(), p, out.o_view, &out.lse_view);
    expect_conforms(w, out, testing::reference_attend(w, 64, p.to_dense()), GetParam());
    const auto* lse = static_cast<const float*>(out.lse.data());
    for (std::int64_t t = 128; t < 192; ++t) {
      EXPECT_TRUE(std::isinf(lse[1 * 200 + t]) && lse[1 * 200 + t] < 0) << "token " << t;
      for (std::int64_t c = 0; c < 64; ++c) {
        const std::int64_t i = (t * 2 + 1) * 64 + c;
        const bool zero = dtype == DType::kFloat32
                              ? static_cast<const float*>(out.o.data())[i] == 0.0f
                              : static_cast<const std::uint16_t*>(out.o.data())[i] == 0;
        EXPECT_TRUE(zero) << "token " << t << " dim " << c;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Tiers, KernelEdges,
                         ::testing::Values("scalar", "avx512", "avx512bf16", "amx"),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

// ---- Dispatch ---------------------------------------------------------------------------------

TEST(KernelDispatch, UnknownOrMissingTierIsAClearError) {
  const Workload w = make_workload({100}, 2, 1, 64, DType::kBFloat16, WorkloadKind::kRandom, 1);
  Output out = testing::make_output(w);
  {
    ScopedIsa isa("avx9000");
    try {
      dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), out.o_view, &out.lse_view);
      FAIL() << "an unknown tier was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("PROXYATTN_CPU_ISA"), std::string::npos) << e.what();
    }
  }
  if (!cpu_info().has_amx) {
    ScopedIsa isa("amx");
    EXPECT_THROW(dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), out.o_view, &out.lse_view),
                 Error);
    EXPECT_THROW(cpu_info(), Error);
  }
}

TEST(KernelDispatch, InfoAndPeak) {
  const CpuInfo info = cpu_info();
  EXPECT_FALSE(info.model.empty());
  const char* forced = std::getenv("PROXYATTN_CPU_ISA");
  EXPECT_EQ(info.isa, forced != nullptr && forced[0] != '\0' ? std::string(forced) : info.best_isa);
  EXPECT_GE(info.hardware_threads, 1);
  EXPECT_THROW(cpu_peak_gflops(DType::kBFloat16, 0), Error);
  EXPECT_THROW(cpu_peak_gflops(DType::kFloat16, 1), Error);
  const double peak = cpu_peak_gflops(DType::kFloat32, 1, 0.02);
  if (info.has_avx512) {
    EXPECT_GT(peak, 1.0);  // a sanity bound, not a timing test
  } else {
    EXPECT_EQ(peak, 0.0);
  }
  EXPECT_EQ(cpu_amx_peak_gflops(1, 0.02) > 0.0, info.has_amx);
}

// Any positive thread count is valid (more threads than work items too) and gives the same bytes.
TEST(KernelThreads, ManyThreadsSameBytes) {
  const Workload w = make_workload({300}, 4, 2, 64, DType::kBFloat16, WorkloadKind::kRandom, 4);
  Output a = testing::make_output(w), b = testing::make_output(w);
  dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), a.o_view, &a.lse_view, 0.0f, Runtime{1});
  dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), b.o_view, &b.lse_view, 0.0f, Runtime{64});
  EXPECT_TRUE(same_bytes(a.o, b.o));
  EXPECT_TRUE(same_bytes(a.lse, b.lse));
}

}  // namespace
}  // namespace proxyattn
