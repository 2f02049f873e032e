// tests/attend_test.cc: stage 7 on the CPU (proxyattn::attend) against the double reference
// (reference::attend, dense attention under the token-level mask expanded from the plan), over
// the reference's own plans, docs/SPEC.md's random masks and user-built masks; empty rows; the
// differential tests (forced density 1 equals dense, bit for bit on the CPU); strided views.
//
// Pass rule (docs/STYLE.md section 6): rel_error per head <= 2x the same-precision naive error +
// noise (testing::Reference::bound, output_conforms), no NaN/Inf, LSE
// checked. On failure the first mismatches are printed with their (head, token, dim).
//
// Run: ./build/tests/attend_test
// Variants:
//   AttendSweep/*   dtype x head_dim (64, 128, 40) x block x plan source x length; the GQA ratio
//                   rotates with the case and is spelled in the name
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

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

double lse_tolerance() { return 1e-3; }  // fp32 accumulation on both dtypes

// Checks out (and its lse) against the reference with the docs/STYLE.md pass rule.
void expect_matches(const Workload& w, const Output& out, const Reference& ref, float scale = 0.0f) {
  const reference::Operands p = testing::operands_of(w, &out, scale);
  const OutputError e = compare_output(p, ref.out, ref.lse);
  const double tol = ref.bound(w.spec.dtype);  // 2x the same-precision naive error + noise
  EXPECT_EQ(e.non_finite, 0) << "NaN/Inf where the reference is finite";
  EXPECT_TRUE(output_conforms(e, tol, w.spec.dtype))
      << "rel error " << e.rel_error << " > bound " << tol << " (naive " << ref.naive.rel_error
      << ")\n" << testing::describe_mismatches(w, out, ref, tol * 10);
  EXPECT_LE(e.lse_max_abs_error, lse_tolerance());
  // No NaN/Inf anywhere in O, and LSE finite exactly where the reference's is.
  const std::int64_t T = w.total_tokens, H = w.spec.num_qo_heads, D = w.spec.head_dim;
  for (std::int64_t i = 0; i < T * H * D; ++i) {
    ASSERT_TRUE(std::isfinite(load_float(out.o.data(), w.spec.dtype, i))) << "O element " << i;
  }
  const auto* lse = static_cast<const float*>(out.lse.data());
  for (std::int64_t i = 0; i < H * T; ++i) {
    ASSERT_EQ(std::isfinite(lse[i]), std::isfinite(ref.lse[i])) << "LSE element " << i;
  }
}

Config sparse_config(int block) {
  Config c;
  c.block_size = block;
  c.stride = 4;
  c.gamma = 0.9;
  c.min_budget_tokens = 0;
  c.dense_below_tokens = 0;
  return c;
}

// ---- Sweep -------------------------------------------------------------------------------------

enum class Source { kReferencePlan, kRandomMask10, kRandomMask50 };

const char* to_string(Source s) {
  switch (s) {
    case Source::kReferencePlan: return "refplan";
    case Source::kRandomMask10: return "random10";
    case Source::kRandomMask50: return "random50";
  }
  return "?";
}

void PrintTo(Source s, std::ostream* os) { *os << to_string(s); }

using AttendParam = std::tuple<DType, int, int, Source, int>;  // dtype, head_dim, block, source, N

struct HeadsChoice {
  std::int64_t qo, kv;
};

HeadsChoice heads_of(const AttendParam& p) {
  static const HeadsChoice kHeads[] = {{4, 1}, {4, 4}, {7, 1}, {4, 2}};
  const std::uint64_t k = testing::mix_seed(
      static_cast<std::uint64_t>(std::get<1>(p) * 1000 + std::get<2>(p) + std::get<4>(p) * 7),
      static_cast<std::uint64_t>(static_cast<int>(std::get<0>(p)) * 3 + static_cast<int>(std::get<3>(p))));
  return kHeads[k % 4];
}

std::string attend_name(const ::testing::TestParamInfo<AttendParam>& info) {
  const auto [dtype, d, block, source, n] = info.param;
  const HeadsChoice h = heads_of(info.param);
  std::ostringstream os;
  os << proxyattn::to_string(dtype) << "_d" << d << "_b" << block << "_" << to_string(source) << "_N"
     << n << "_h" << h.qo << "x" << h.kv;
  return os.str();
}

class AttendSweep : public ::testing::TestWithParam<AttendParam> {};

TEST_P(AttendSweep, MatchesReference) {
  const auto [dtype, d, block, source, n] = GetParam();
  const HeadsChoice heads = heads_of(GetParam());
  // A second, shorter sequence makes every case a packed batch.
  const Workload w = make_workload({n, 37}, heads.qo, heads.kv, d, dtype, WorkloadKind::kStructured,
                          static_cast<std::uint64_t>(n + d));
  Buffer ws;
  Plan p;
  if (source == Source::kReferencePlan) {
    Config c = sparse_config(block);
    const auto ref_plan = reference::plan(testing::operands_of(w, nullptr), c);
    ws = Buffer(workspace_size(w.shape(), c));
    p = reference::to_plan(ref_plan, w.shape(), c, ws.workspace(), 0.0f);
  } else {
    p = testing::random_mask_plan(w.shape(), block, source == Source::kRandomMask10 ? 0.1 : 0.5,
                                  static_cast<std::uint64_t>(n), ws);
  }
  Output out = testing::make_output(w);
  attend(w.q_view(), w.k_view(), w.v_view(), p, out.o_view, &out.lse_view, Runtime{2});
  const Reference ref = testing::reference_attend(w, block, p.to_dense());
  expect_matches(w, out, ref);
}

INSTANTIATE_TEST_SUITE_P(
    Sweep, AttendSweep,
    ::testing::Combine(::testing::Values(DType::kFloat32, DType::kBFloat16),
                       ::testing::Values(64, 128, 40), ::testing::Values(64, 128),
                       ::testing::Values(Source::kReferencePlan, Source::kRandomMask10,
                                         Source::kRandomMask50),
                       ::testing::Values(1, 127, 577)),
    attend_name);

// ---- User-built masks and empty rows -----------------------------------------------------------

TEST(Attend, UserMaskWithEmptyRowsGivesZeroAndNegInf) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    // 4 blocks of 64; 2 query heads on 1 KV head (one group). Head 0 attends nothing in row 1
    // and only block 1 in row 3; head 1 attends everything but row 2's block 0.
    const Workload w = make_workload({250}, 2, 1, 64, dtype);
    const std::int64_t nb = 4;
    std::vector<std::uint8_t> mask(2 * nb * nb, 0);
    auto at = [&](std::int64_t h, std::int64_t m, std::int64_t n) -> std::uint8_t& {
      return mask[(h * nb + m) * nb + n];
    };
    for (std::int64_t m = 0; m < nb; ++m) {
      for (std::int64_t n = 0; n <= m; ++n) at(1, m, n) = 1;
    }
    at(1, 2, 0) = 0;
    at(0, 0, 0) = 1;
    at(0, 2, 2) = 1;  // nested in head 1's {1, 2}
    at(0, 3, 1) = 1;  // last row: per head, no diagonal (its rows still see keys of block 1)
    ProblemShape shape = w.shape();
    Buffer ws(workspace_size(shape, sparse_config(64)));
    const Plan p = plan_from_block_mask(shape, 64, 1, mask.data(), ws.workspace());
    EXPECT_EQ(p.to_dense(), mask);
    Output out = testing::make_output(w);
    std::memset(out.o.data(), 0x7f, out.o.size());  // not zero before the call
    attend(w.q_view(), w.k_view(), w.v_view(), p, out.o_view, &out.lse_view, Runtime{2});
    const Reference ref = testing::reference_attend(w, 64, mask);
    const auto* lse = static_cast<const float*>(out.lse.data());
    for (std::int64_t t = 64; t < 128; ++t) {  // head 0, row 1: empty
      EXPECT_EQ(lse[0 * w.total_tokens + t], kNegInf) << "token " << t;
      EXPECT_EQ(ref.lse[0 * w.total_tokens + t], -std::numeric_limits<double>::infinity());
      for (std::int64_t d = 0; d < 64; ++d) {
        const float x = load_float(out.o.data(), dtype, (t * 2 + 0) * 64 + d);
        ASSERT_EQ(x, 0.0f) << "token " << t << " dim " << d;
        ASSERT_FALSE(std::signbit(x));
      }
    }
    // The rest matches the reference (compare_output skips the -inf LSE rows as equal).
    const OutputError e = compare_output(testing::operands_of(w, &out), ref.out, ref.lse);
    EXPECT_LE(e.rel_error, ref.bound(dtype));
    EXPECT_LE(e.lse_max_abs_error, lse_tolerance());
    EXPECT_EQ(e.non_finite, 0);
  }
}

TEST(Attend, AllEmptyPlan) {
  const Workload w = make_workload({130, 10}, 4, 2, 64, DType::kFloat32);
  ProblemShape shape = w.shape();
  const std::size_t cells = 4 * 3 * 3 + 4 * 1 * 1;
  std::vector<std::uint8_t> mask(cells, 0);
  Buffer ws(workspace_size(shape, [] {
    Config c = sparse_config(64);
    c.num_proxy_heads = 2;
    return c;
  }()));
  const Plan p = plan_from_block_mask(shape, 64, 2, mask.data(), ws.workspace());
  Output out = testing::make_output(w);
  attend(w.q_view(), w.k_view(), w.v_view(), p, out.o_view, &out.lse_view);
  const auto* o = static_cast<const float*>(out.o.data());
  for (std::int64_t i = 0; i < w.total_tokens * 4 * 64; ++i) ASSERT_EQ(o[i], 0.0f);
  const auto* lse = static_cast<const float*>(out.lse.data());
  for (std::int64_t i = 0; i < w.total_tokens * 4; ++i) ASSERT_EQ(lse[i], kNegInf);
}

TEST(Attend, WithoutLse) {
  const Workload w = make_workload({300}, 4, 1, 64, DType::kBFloat16);
  Buffer ws;
  const Plan p = testing::random_mask_plan(w.shape(), 64, 0.3, 5, ws);
  Output with = testing::make_output(w), without = testing::make_output(w);
  attend(w.q_view(), w.k_view(), w.v_view(), p, with.o_view, &with.lse_view);
  attend(w.q_view(), w.k_view(), w.v_view(), p, without.o_view, nullptr);
  EXPECT_EQ(std::memcmp(with.o.data(), without.o.data(), with.o.size()), 0);
}

// ---- Differential tests ------------------------------------------------------------------------

TEST(AttendDifferential, ForcedDensityOneEqualsDenseBitwise) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const Workload w = make_workload({1000, 300}, 4, 2, 64, dtype, WorkloadKind::kRandom, 3);
    Config c = sparse_config(128);  // dense() tiles by 128 too, so the sums are the same sums
    c.forced_density = 1.0;
    Buffer ws(workspace_size(w.shape(), c));
    const Plan p = plan(w.q_view(), w.k_view(), w.seqlens(), c, ws.workspace(), Runtime{2});
    EXPECT_EQ(p.stats().density_weighted, 1.0);
    Output sparse = testing::make_output(w), full = testing::make_output(w);
    attend(w.q_view(), w.k_view(), w.v_view(), p, sparse.o_view, &sparse.lse_view, Runtime{2});
    dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), full.o_view, &full.lse_view, 0.0f,
          Runtime{3});
    EXPECT_EQ(std::memcmp(sparse.o.data(), full.o.data(), sparse.o.size()), 0) << to_string(dtype);
    EXPECT_EQ(std::memcmp(sparse.lse.data(), full.lse.data(), sparse.lse.size()), 0);
    expect_matches(w, full, testing::reference_dense(w));
  }
}

TEST(AttendDifferential, ForcedDensityOneEqualsDenseBlock64) {
  // Other tiles, other rounding: equal within the tolerance, not bitwise.
  const Workload w = make_workload({577}, 4, 1, 64, DType::kFloat32, WorkloadKind::kRandom, 4);
  Config c = sparse_config(64);
  c.forced_density = 1.0;
  Buffer ws(workspace_size(w.shape(), c));
  Output sparse = testing::make_output(w);
  prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(), sparse.o_view,
          &sparse.lse_view);
  expect_matches(w, sparse, testing::reference_dense(w));
}

TEST(AttendDifferential, SparseEqualsDenseWithExpandedMask) {
  // The sparse kernel over a plan equals dense attention under the plan's token mask: the
  // reference runs the dense double loop and drops keys whose block is unselected. A plan that
  // selects every block equals the dense kernel exactly.
  for (int block : {64, 128}) {
    const Workload w = make_workload({900, 64}, 4, 2, 64, DType::kBFloat16, WorkloadKind::kStructured, 9);
    Buffer ws;
    const Plan sparse_plan = testing::random_mask_plan(w.shape(), block, 0.25, 77, ws);
    Output sparse = testing::make_output(w);
    attend(w.q_view(), w.k_view(), w.v_view(), sparse_plan, sparse.o_view, &sparse.lse_view);
    expect_matches(w, sparse, testing::reference_attend(w, block, sparse_plan.to_dense()));

    Buffer ws_all;
    const Plan all = testing::random_mask_plan(w.shape(), block, 1.0, 77, ws_all);
    Output sparse_all = testing::make_output(w), full = testing::make_output(w);
    attend(w.q_view(), w.k_view(), w.v_view(), all, sparse_all.o_view, &sparse_all.lse_view);
    dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), full.o_view, &full.lse_view);
    if (block == 128) {
      EXPECT_EQ(std::memcmp(sparse_all.o.data(), full.o.data(), full.o.size()), 0);
    }
    expect_matches(w, sparse_all, testing::reference_dense(w));
  }
}

TEST(AttendDifferential, ExplicitScale) {
  const Workload w = make_workload({300}, 4, 4, 64, DType::kFloat32, WorkloadKind::kRandom, 12);
  Config c = sparse_config(64);
  c.scale = 0.05f;
  Buffer ws(workspace_size(w.shape(), c));
  Output out = testing::make_output(w);
  const Plan p = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws.workspace(),
                         out.o_view, &out.lse_view);
  EXPECT_EQ(p.scale, 0.05f);
  expect_matches(w, out, testing::reference_attend(w, 64, p.to_dense(), 0.05f), 0.05f);
}

// ---- Strided views -----------------------------------------------------------------------------

TEST(AttendStrided, PackedQkvAndPaddedOutputEqualContiguous) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16}) {
    const std::int64_t Hq = 4, Hk = 2, D = 64;
    const Workload w = make_workload({500, 77}, Hq, Hk, D, dtype, WorkloadKind::kStructured, 21);
    const std::int64_t T = w.total_tokens, es = static_cast<std::int64_t>(dtype_size(dtype));
    // One packed [T, Hq + 2 Hk, D] buffer, as a fused QKV projection writes it.
    const std::int64_t row = (Hq + 2 * Hk) * D;
    Buffer qkv(static_cast<std::size_t>(T * row * es));
    auto* base = static_cast<char*>(qkv.data());
    for (std::int64_t t = 0; t < T; ++t) {
      std::memcpy(base + (t * row) * es, static_cast<char*>(w.q.data()) + t * Hq * D * es, Hq * D * es);
      std::memcpy(base + (t * row + Hq * D) * es, static_cast<char*>(w.k.data()) + t * Hk * D * es,
                  Hk * D * es);
      std::memcpy(base + (t * row + (Hq + Hk) * D) * es,
                  static_cast<char*>(w.v.data()) + t * Hk * D * es, Hk * D * es);
    }
    auto view = [&](std::int64_t offset, std::int64_t heads) {
      TensorView v = TensorView::contiguous(base + offset * es, dtype, {T, heads, D});
      v.strides[0] = row;
      return v;
    };
    const TensorView q = view(0, Hq), k = view(Hq * D, Hk), v = view((Hq + Hk) * D, Hk);
    EXPECT_FALSE(q.is_contiguous());
    // Output with padded heads and rows; LSE with a padded row stride.
    const std::int64_t head_stride = D + 8, out_row = Hq * head_stride + 16;
    Buffer out_buf(static_cast<std::size_t>(T * out_row * es));
    TensorView o = TensorView::contiguous(out_buf.data(), dtype, {T, Hq, D});
    o.strides[0] = out_row;
    o.strides[1] = head_stride;
    const std::int64_t lse_row = T + 5;
    Buffer lse_buf(static_cast<std::size_t>(Hq * lse_row) * sizeof(float));
    TensorView lse = TensorView::contiguous(lse_buf.data(), DType::kFloat32, {Hq, T});
    lse.strides[0] = lse_row;

    Config c = sparse_config(64);
    c.num_proxy_heads = 2;
    Buffer ws(workspace_size(w.shape(), c)), ws2(workspace_size(w.shape(), c));
    const Plan ps = prefill(q, k, v, w.seqlens(), c, ws.workspace(), o, &lse, Runtime{2});
    Output ref_out = testing::make_output(w);
    const Plan pc = prefill(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), c, ws2.workspace(),
                            ref_out.o_view, &ref_out.lse_view, Runtime{2});
    EXPECT_EQ(ps.to_dense(), pc.to_dense()) << "plan depends on the views' strides";
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t h = 0; h < Hq; ++h) {
        ASSERT_EQ(std::memcmp(static_cast<char*>(out_buf.data()) + (t * out_row + h * head_stride) * es,
                              static_cast<char*>(ref_out.o.data()) + ((t * Hq + h) * D) * es, D * es),
                  0)
            << "token " << t << " head " << h;
        ASSERT_EQ(static_cast<float*>(lse_buf.data())[h * lse_row + t],
                  static_cast<float*>(ref_out.lse.data())[h * T + t]);
      }
    }
    expect_matches(w, ref_out, testing::reference_attend(w, 64, pc.to_dense()));
    // Dense over the same strided views.
    dense(q, k, v, w.seqlens(), o, &lse);
    Output dense_out = testing::make_output(w);
    dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), dense_out.o_view, &dense_out.lse_view);
    for (std::int64_t t = 0; t < T; ++t) {
      for (std::int64_t h = 0; h < Hq; ++h) {
        ASSERT_EQ(std::memcmp(static_cast<char*>(out_buf.data()) + (t * out_row + h * head_stride) * es,
                              static_cast<char*>(dense_out.o.data()) + ((t * Hq + h) * D) * es, D * es),
                  0);
      }
    }
  }
}

TEST(AttendStrided, BroadcastHeadStrideZero) {
  // K and V with head stride 0 (one KV head's memory shared by two KV heads) equal the same data
  // materialized twice.
  const std::int64_t D = 64;
  const Workload one = make_workload({260}, 2, 1, D, DType::kFloat32, WorkloadKind::kRandom, 30);
  const std::int64_t T = one.total_tokens;
  TensorView k = TensorView::contiguous(one.k.data(), DType::kFloat32, {T, 2, D});
  TensorView v = TensorView::contiguous(one.v.data(), DType::kFloat32, {T, 2, D});
  k.strides[0] = D;
  k.strides[1] = 0;
  v.strides[0] = D;
  v.strides[1] = 0;
  // Materialized: q unchanged, 2 KV heads each a copy.
  Buffer k2(static_cast<std::size_t>(T * 2 * D) * 4), v2(static_cast<std::size_t>(T * 2 * D) * 4);
  for (std::int64_t t = 0; t < T; ++t) {
    for (int h = 0; h < 2; ++h) {
      std::memcpy(static_cast<float*>(k2.data()) + (t * 2 + h) * D,
                  static_cast<float*>(one.k.data()) + t * D, D * 4);
      std::memcpy(static_cast<float*>(v2.data()) + (t * 2 + h) * D,
                  static_cast<float*>(one.v.data()) + t * D, D * 4);
    }
  }
  const TensorView kc = TensorView::contiguous(k2.data(), DType::kFloat32, {T, 2, D});
  const TensorView vc = TensorView::contiguous(v2.data(), DType::kFloat32, {T, 2, D});
  Output a = testing::make_output(one), b = testing::make_output(one);
  dense(one.q_view(), k, v, one.seqlens(), a.o_view, &a.lse_view);
  dense(one.q_view(), kc, vc, one.seqlens(), b.o_view, &b.lse_view);
  EXPECT_EQ(std::memcmp(a.o.data(), b.o.data(), a.o.size()), 0);
  EXPECT_EQ(std::memcmp(a.lse.data(), b.lse.data(), a.lse.size()), 0);
}

}  // namespace
}  // namespace proxyattn
