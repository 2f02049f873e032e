// tests/validation_test.cc: every validation error of docs/SPEC.md section 6, once each. Each case
// asserts that proxyattn::Error is thrown, that its message names the argument, and that nothing
// was written to out (nor lse): both are filled with a sentinel first and compared after.
//
// Run: ./build/tests/validation_test
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "proxyattn/proxyattn.h"
#include "proxyattn/oracle/workload.h"

namespace proxyattn {
namespace {

using testing::Buffer;
using testing::Workload;

constexpr unsigned char kSentinel = 0xA5;

class Validation : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::WorkloadSpec spec;
    spec.seq_lens = {100, 200};
    spec.num_qo_heads = 4;
    spec.num_kv_heads = 2;
    spec.head_dim = 64;
    spec.dtype = DType::kFloat32;
    spec.kind = testing::WorkloadKind::kRandom;
    w_ = testing::make_workload(spec);
    config_.block_size = 64;
    config_.stride = 2;
    config_.min_budget_tokens = 0;
    config_.dense_below_tokens = 0;
    q_ = w_.q_view();
    k_ = w_.k_view();
    v_ = w_.v_view();
    out_buf_ = Buffer(w_.q.size() + 4096);
    lse_buf_ = Buffer(w_.total_tokens * w_.spec.num_qo_heads * sizeof(float) + 4096);
    out_ = TensorView::contiguous(out_buf_.data(), DType::kFloat32,
                                  {w_.total_tokens, spec.num_qo_heads, spec.head_dim});
    lse_ = TensorView::contiguous(lse_buf_.data(), DType::kFloat32,
                                  {spec.num_qo_heads, w_.total_tokens});
    ws_ = Buffer(workspace_size(w_.shape(), config_));
    cu_ = w_.cu_seqlens;
  }

  CuSeqlens seqlens() const { return {cu_.data(), static_cast<std::int64_t>(cu_.size())}; }

  // Fills out and lse with the sentinel, runs fn, and checks that it throws proxyattn::Error
  // whose message contains `needle`, and that out and lse still hold the sentinel.
  void expect_rejected(const std::function<void()>& fn, const std::string& needle,
                       bool names_expectation = true) {
    std::memset(out_buf_.data(), kSentinel, out_buf_.size());
    std::memset(lse_buf_.data(), kSentinel, lse_buf_.size());
    std::string msg;
    bool threw = false;
    try {
      fn();
    } catch (const Error& e) {
      threw = true;
      msg = e.what();
    } catch (const std::exception& e) {
      ADD_FAILURE() << "threw a non-proxyattn exception: " << e.what();
      return;
    }
    EXPECT_TRUE(threw) << "expected proxyattn::Error naming '" << needle << "'";
    EXPECT_NE(msg.find(needle), std::string::npos)
        << "message '" << msg << "' does not name '" << needle << "'";
    if (names_expectation) {
      EXPECT_NE(msg.find("expected"), std::string::npos)
          << "message '" << msg << "' does not say what was expected";
    }
    EXPECT_TRUE(untouched(out_buf_)) << "out was written although the call was rejected";
    EXPECT_TRUE(untouched(lse_buf_)) << "lse was written although the call was rejected";
  }

  static bool untouched(const Buffer& b) {
    const auto* p = static_cast<const unsigned char*>(b.data());
    for (std::size_t i = 0; i < b.size(); ++i) {
      if (p[i] != kSentinel) return false;
    }
    return true;
  }

  // prefill with the fixture's (possibly modified) operands.
  void run_prefill() {
    prefill(q_, k_, v_, seqlens(), config_, ws_.workspace(), out_, &lse_, Runtime{2});
  }
  void run_prefill_ws(Workspace ws) {
    prefill(q_, k_, v_, seqlens(), config_, ws, out_, &lse_, Runtime{2});
  }
  void run_dense() { dense(q_, k_, v_, seqlens(), out_, &lse_, 0.0f, Runtime{2}); }
  void run_prefill_with(TensorView out, TensorView lse) {
    prefill(q_, k_, v_, seqlens(), config_, ws_.workspace(), out, &lse, Runtime{2});
  }

  Workload w_;
  Config config_;
  TensorView q_, k_, v_, out_, lse_;
  Buffer out_buf_, lse_buf_, ws_;
  std::vector<std::int32_t> cu_;
};

TEST_F(Validation, ValidCallWritesOut) {
  // The fixture itself is valid: the sentinel is overwritten and no error is thrown.
  std::memset(out_buf_.data(), kSentinel, out_buf_.size());
  EXPECT_NO_THROW(run_prefill());
  EXPECT_FALSE(untouched(out_buf_));
}

TEST_F(Validation, EmptyOperandsHaveNoLayoutToCheck) {
  // Zero tokens: no element is addressed, so any strides are accepted (NumPy 2 exports zero-size
  // arrays with zero strides), and dense, plan and prefill succeed without writing anything.
  const std::int32_t cu[] = {0, 0};
  const CuSeqlens none{cu, 2};
  auto empty = [](TensorView t) {
    t.shape[0] = 0;
    for (int d = 0; d < t.rank; ++d) t.strides[d] = 0;
    return t;
  };
  TensorView q = empty(q_), k = empty(k_), v = empty(v_), out = empty(out_);
  TensorView lse = lse_;
  lse.shape[1] = 0;
  lse.strides[0] = lse.strides[1] = 0;
  std::memset(out_buf_.data(), kSentinel, out_buf_.size());
  EXPECT_NO_THROW(dense(q, k, v, none, out, &lse, 0.0f, Runtime{2}));
  EXPECT_NO_THROW(prefill(q, k, v, none, config_, ws_.workspace(), out, &lse, Runtime{2}));
  EXPECT_TRUE(untouched(out_buf_));
  // A non-empty operand still needs its layout.
  TensorView bad = q_;
  bad.strides[2] = 0;
  expect_rejected([&] { dense(bad, k_, v_, seqlens(), out_, &lse_, 0.0f, Runtime{2}); },
                  "q.strides[2]");
}

TEST_F(Validation, OutputsMustNotShareMemoryWithInputs) {
  // out over q (in place), out from v on, lse over the end of k: other threads may still read an
  // input where one writes, so each is an error naming both arguments; nothing is written.
  TensorView in_place = q_;
  expect_rejected([&] { dense(q_, k_, v_, seqlens(), in_place, &lse_, 0.0f, Runtime{2}); },
                  "out.data");
  TensorView out_on_v = out_;
  out_on_v.data = v_.data;
  out_on_v.shape[0] = k_.shape[0];  // q and k have the same tokens
  expect_rejected([&] { run_prefill_with(out_on_v, lse_); }, "out.data");
  TensorView lse_on_k = TensorView::contiguous(
      static_cast<char*>(k_.data) + 4 * (k_.shape[1] * k_.shape[2] * k_.shape[0] - 8),
      DType::kFloat32, {lse_.shape[0], lse_.shape[1]});
  expect_rejected([&] { run_prefill_with(out_, lse_on_k); }, "lse.data");
}

TEST_F(Validation, UnsupportedDtype) {
  q_.dtype = k_.dtype = v_.dtype = out_.dtype = DType::kFloat16;  // fp16 has no CPU path
  expect_rejected([&] { run_prefill(); }, "q.dtype");
}

TEST_F(Validation, DtypeMismatch) {
  k_.dtype = DType::kBFloat16;
  expect_rejected([&] { run_prefill(); }, "k.dtype");
}

TEST_F(Validation, OutDtypeMismatch) {
  out_.dtype = DType::kBFloat16;
  expect_rejected([&] { run_dense(); }, "out.dtype");
}

TEST_F(Validation, DeviceMismatch) {
  v_.device = Device::kCUDA;
  expect_rejected([&] { run_prefill(); }, "v.device");
}

TEST_F(Validation, WorkspaceDeviceMismatch) {
  Workspace ws = ws_.workspace();
  ws.device = Device::kCUDA;
  expect_rejected([&] { run_prefill_ws(ws); }, "workspace.device");
}

TEST_F(Validation, QRank) {
  q_.rank = 2;
  expect_rejected([&] { run_prefill(); }, "q.rank");
}

TEST_F(Validation, KRank) {
  k_.rank = 4;
  expect_rejected([&] { run_prefill(); }, "k.rank");
}

TEST_F(Validation, TokensDisagree) {
  k_.shape[0] -= 1;
  v_.shape[0] -= 1;
  expect_rejected([&] { run_prefill(); }, "k.shape");
}

TEST_F(Validation, HeadDimDisagrees) {
  k_.shape[2] = 32;
  expect_rejected([&] { run_prefill(); }, "k.shape");
}

TEST_F(Validation, VShapeDisagrees) {
  v_.shape[1] = 1;
  expect_rejected([&] { run_prefill(); }, "v.shape");
}

TEST_F(Validation, OutShapeDisagrees) {
  out_.shape[0] -= 1;  // smaller than the buffer, so a stray write would be caught, not crash
  expect_rejected([&] { run_prefill(); }, "out.shape");
}

TEST_F(Validation, QoHeadsNotMultipleOfKvHeads) {
  q_.shape[1] = 3;  // 3 % 2 != 0
  out_.shape[1] = 3;
  expect_rejected([&] { run_prefill(); }, "num_qo_heads");
}

TEST_F(Validation, KvHeadsNotMultipleOfProxyHeads) {
  config_.num_proxy_heads = 3;  // num_kv_heads = 2
  expect_rejected([&] { run_prefill(); }, "config.num_proxy_heads");
}

TEST_F(Validation, UnsupportedHeadDim) {
  for (std::int64_t d : {60, 4}) {
    q_.shape[2] = k_.shape[2] = v_.shape[2] = out_.shape[2] = d;
    expect_rejected([&] { run_prefill(); }, "head_dim");
  }
}

TEST_F(Validation, NonUnitHeadDimStride) {
  q_.strides[2] = 2;
  expect_rejected([&] { run_prefill(); }, "q.strides");
}

TEST_F(Validation, NegativeStride) {
  v_.strides[0] = -v_.strides[0];
  expect_rejected([&] { run_prefill(); }, "v.strides");
}

TEST_F(Validation, Misaligned) {
  q_.data = static_cast<char*>(q_.data) + 1;  // fp32 needs 4-byte alignment
  expect_rejected([&] { run_prefill(); }, "q.data");
}

TEST_F(Validation, NullData) {
  k_.data = nullptr;
  expect_rejected([&] { run_prefill(); }, "k.data");
}

TEST_F(Validation, CuSeqlensNotMonotone) {
  cu_ = {0, 200, 100, 300};
  expect_rejected([&] { run_prefill(); }, "cu_seqlens[2]");
}

TEST_F(Validation, CuSeqlensNotStartingAtZero) {
  cu_ = {10, 100, 300};
  expect_rejected([&] { run_prefill(); }, "cu_seqlens[0]");
}

TEST_F(Validation, CuSeqlensNotEndingAtTotal) {
  cu_ = {0, 100, 299};
  expect_rejected([&] { run_prefill(); }, "cu_seqlens[2]");
}

TEST_F(Validation, CuSeqlensWrongSize) {
  cu_ = {0};
  expect_rejected([&] { run_prefill(); }, "cu_seqlens.size");
}

TEST_F(Validation, CuSeqlensNullWithSize) {
  std::memset(out_buf_.data(), kSentinel, out_buf_.size());
  expect_rejected(
      [&] {
        prefill(q_, k_, v_, CuSeqlens{nullptr, 3}, config_, ws_.workspace(), out_, &lse_,
                Runtime{2});
      },
      "cu_seqlens.data");
}

TEST_F(Validation, WorkspaceTooSmall) {
  Workspace ws = ws_.workspace();
  ws.size -= 1;
  expect_rejected([&] { run_prefill_ws(ws); }, "workspace.size");
}

TEST_F(Validation, WorkspaceNull) {
  Workspace ws = ws_.workspace();
  ws.data = nullptr;
  expect_rejected([&] { run_prefill_ws(ws); }, "workspace.data");
}

TEST_F(Validation, WorkspaceMisaligned) {
  Buffer big(ws_.size() + 512);
  Workspace ws = big.workspace();
  ws.data = static_cast<char*>(ws.data) + 16;
  ws.size -= 16;
  expect_rejected([&] { run_prefill_ws(ws); }, "workspace.data");
}

TEST_F(Validation, ConfigOutOfRange) {
  config_.gamma = 0.0;
  expect_rejected([&] { run_prefill(); }, "config.gamma");
}

TEST_F(Validation, ConfigOutOfRangeInPlan) {
  config_.stride = 3;
  expect_rejected([&] { plan(q_, k_, seqlens(), config_, ws_.workspace()); }, "config.stride");
}

TEST_F(Validation, LseShape) {
  lse_.shape[1] -= 1;
  expect_rejected([&] { run_prefill(); }, "lse.shape");
}

TEST_F(Validation, LseDtype) {
  lse_.dtype = DType::kBFloat16;
  expect_rejected([&] { run_prefill(); }, "lse.dtype");
}

TEST_F(Validation, LseRank) {
  lse_.rank = 3;
  expect_rejected([&] { run_dense(); }, "lse.rank");
}

TEST_F(Validation, DenseScale) {
  expect_rejected([&] { dense(q_, k_, v_, seqlens(), out_, &lse_, -1.0f); }, "scale");
}

TEST_F(Validation, AttendPlanForOtherHeads) {
  // attend takes the sequences from the plan; a plan made for other head counts is rejected.
  ProblemShape shape = w_.shape();
  shape.num_qo_heads = 2;
  shape.num_kv_heads = 1;
  Config c = config_;
  c.num_proxy_heads = 1;
  Buffer ws(workspace_size(shape, c));
  std::vector<std::uint8_t> mask;
  for (std::int64_t i = 0; i + 1 < static_cast<std::int64_t>(cu_.size()); ++i) {
    const std::int64_t nb = (cu_[i + 1] - cu_[i] + 63) / 64;
    mask.insert(mask.end(), static_cast<std::size_t>(2 * nb * nb), 1);
  }
  const Plan other = plan_from_block_mask(shape, 64, 1, mask.data(), ws.workspace());
  expect_rejected([&] { attend(q_, k_, v_, other, out_, &lse_); }, "plan heads");
  // A plan for these heads attends with the very same operands.
  const Plan p = plan(q_, k_, seqlens(), config_, ws_.workspace());
  EXPECT_NO_THROW(attend(q_, k_, v_, p, out_, &lse_));
}

TEST_F(Validation, AttendPlanForOtherTokens) {
  // A plan whose sequences do not cover q's tokens fails the cu_seqlens check.
  ProblemShape shape = w_.shape();
  shape.total_tokens = 200;
  shape.cu_seqlens = {0, 200};
  Config c = config_;
  c.num_proxy_heads = 2;
  Buffer ws(workspace_size(shape, c));
  std::vector<std::uint8_t> mask(4 * 4 * 4, 1);
  const Plan other = plan_from_block_mask(shape, 64, 2, mask.data(), ws.workspace());
  expect_rejected([&] { attend(q_, k_, v_, other, out_, &lse_); }, "cu_seqlens[1]");
}

TEST_F(Validation, AttendRejectsOutShape) {
  const Plan p = plan(q_, k_, seqlens(), config_, ws_.workspace());
  out_.shape[1] = 2;
  expect_rejected([&] { attend(q_, k_, v_, p, out_, &lse_); }, "out.shape");
}

TEST_F(Validation, WorkspaceSizeRejectsConfig) {
  config_.num_proxy_heads = 4;  // num_kv_heads = 2
  expect_rejected([&] { workspace_size(w_.shape(), config_); }, "config.num_proxy_heads");
}

TEST(PlanFromBlockMask, RejectsNonNestedMask) {
  // One sequence of 3 blocks (b = 64), 2 query heads on 1 KV head, one group. In query block 1
  // (not the last) head 0 selects {0} and head 1 selects {1}: not nested.
  ProblemShape shape;
  shape.total_tokens = 192;
  shape.num_qo_heads = 2;
  shape.num_kv_heads = 1;
  shape.head_dim = 64;
  shape.cu_seqlens = {0, 192};
  const std::int64_t nb = 3;
  std::vector<std::uint8_t> mask(2 * nb * nb, 0);
  auto at = [&](std::int64_t h, std::int64_t m, std::int64_t n) -> std::uint8_t& {
    return mask[(h * nb + m) * nb + n];
  };
  for (int h = 0; h < 2; ++h) {
    for (int m = 0; m < nb; ++m) at(h, m, 0) = 1;
  }
  at(1, 1, 0) = 0;
  at(1, 1, 1) = 1;
  Config c;
  c.block_size = 64;
  c.num_proxy_heads = 1;
  c.min_budget_tokens = 0;
  c.dense_below_tokens = 0;
  Buffer ws(workspace_size(shape, c));
  try {
    plan_from_block_mask(shape, 64, 1, mask.data(), ws.workspace());
    ADD_FAILURE() << "a non-nested mask was accepted";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("not nested"), std::string::npos) << msg;
    EXPECT_NE(msg.find("query block 1"), std::string::npos) << msg;
  }
  // Nested variants are accepted, and the last block may differ per head.
  at(1, 1, 0) = 1;  // head 1 selects {0, 1}, head 0 selects {0}: nested
  at(0, 2, 2) = 1;
  at(1, 2, 1) = 1;  // last block: {0, 2} vs {0, 1}, per head
  EXPECT_NO_THROW(plan_from_block_mask(shape, 64, 1, mask.data(), ws.workspace()));
}

TEST(PlanFromBlockMask, RejectsNullMaskAndSmallWorkspace) {
  ProblemShape shape;
  shape.total_tokens = 128;
  shape.num_qo_heads = 1;
  shape.num_kv_heads = 1;
  shape.head_dim = 64;
  shape.cu_seqlens = {0, 128};
  Config c;
  c.block_size = 64;
  c.min_budget_tokens = 0;
  c.dense_below_tokens = 0;
  Buffer ws(workspace_size(shape, c));
  EXPECT_THROW(plan_from_block_mask(shape, 64, 1, nullptr, ws.workspace()), Error);
  std::vector<std::uint8_t> mask(4, 1);
  Workspace small = ws.workspace();
  small.size = 16;
  EXPECT_THROW(plan_from_block_mask(shape, 64, 1, mask.data(), small), Error);
}


// Runtime::check_finite (docs/SPEC.md section 6's opt-in check): NaN/Inf are reported by name and
// position before anything is written; without the flag they propagate and nothing throws.
TEST_F(Validation, CheckFiniteNamesTheFirstNonFiniteInput) {
  const Runtime checked{2, nullptr, true};
  float* v = static_cast<float*>(w_.v.data());
  v[(150 * 2 + 1) * 64 + 5] = std::numeric_limits<float>::quiet_NaN();  // v[150, 1, 5]
  expect_rejected([&] { prefill(q_, k_, v_, seqlens(), config_, ws_.workspace(), out_, &lse_, checked); },
                  "v[150, 1, 5]");
  expect_rejected([&] { dense(q_, k_, v_, seqlens(), out_, &lse_, 0.0f, checked); }, "v[150, 1, 5]");
  float* k = static_cast<float*>(w_.k.data());
  k[(7 * 2 + 0) * 64 + 0] = std::numeric_limits<float>::infinity();  // k[7, 0, 0], before v's
  expect_rejected([&] { dense(q_, k_, v_, seqlens(), out_, &lse_, 0.0f, checked); }, "k[7, 0, 0]");
  EXPECT_NO_THROW(run_prefill());  // off by default: NaN/Inf propagate as dense attention would
}


// A host plan edited by hand is checked before attention reads it (docs/SPEC.md section 6).
TEST_F(Validation, AttendRejectsAPlanWithACountOutOfRange) {
  Plan p = plan(q_, k_, seqlens(), config_, ws_.workspace(), Runtime{2});
  p.counts[p.layout.head_index(1, 2, 1)] = 3;  // query block 1 has only 2 causal blocks
  expect_rejected([&] { attend(q_, k_, v_, p, out_, &lse_, Runtime{2}); }, "plan.counts");
}

TEST_F(Validation, AttendRejectsAPlanWithABlockOutOfRange) {
  Plan p = plan(q_, k_, seqlens(), config_, ws_.workspace(), Runtime{2});
  const std::int64_t m = 2;
  p.counts[p.layout.head_index(1, 0, m)] = 2;
  BlockIndex* order = p.group_order + p.layout.order_index(1, 0, m);
  order[1] = 3;  // a key block after the query block
  expect_rejected([&] { attend(q_, k_, v_, p, out_, &lse_, Runtime{2}); }, "plan order");
  order[1] = order[0];  // a repeated block
  expect_rejected([&] { attend(q_, k_, v_, p, out_, &lse_, Runtime{2}); }, "plan order");
  EXPECT_NO_THROW(p.check_flags());  // host plans never raise device flags
}


// A ProblemShape given directly (workspace_size, plan_from_block_mask) is validated as the one
// problem_shape() derives from tensors: no std::length_error, no size from decreasing offsets.
TEST(ShapeValidation, WorkspaceSizeRejectsMalformedShapes) {
  ProblemShape good;
  good.total_tokens = 300;
  good.num_qo_heads = 4;
  good.num_kv_heads = 2;
  good.head_dim = 64;
  good.cu_seqlens = {0, 100, 300};
  Config config;
  config.block_size = 64;
  config.min_budget_tokens = 0;
  config.dense_below_tokens = 0;
  ASSERT_NO_THROW(workspace_size(good, config));
  const std::vector<std::pair<std::function<void(ProblemShape&)>, std::string>> edits = {
      {[](ProblemShape& s) { s.cu_seqlens.clear(); }, "cu_seqlens"},
      {[](ProblemShape& s) { s.cu_seqlens = {0}; }, "cu_seqlens"},
      {[](ProblemShape& s) { s.cu_seqlens = {0, 300, 100, 300}; }, "cu_seqlens"},
      {[](ProblemShape& s) { s.cu_seqlens = {0, 100, 200}; }, "cu_seqlens"},
      {[](ProblemShape& s) { s.cu_seqlens = {5, 100, 300}; }, "cu_seqlens"},
      {[](ProblemShape& s) { s.total_tokens = -1; }, "total_tokens"},
      {[](ProblemShape& s) { s.num_kv_heads = 0; }, "num_kv_heads"},
      {[](ProblemShape& s) { s.num_qo_heads = -4; }, "num_qo_heads"},
      {[](ProblemShape& s) { s.num_qo_heads = 3; }, "num_qo_heads"},
      {[](ProblemShape& s) { s.head_dim = -64; }, "head_dim"},
  };
  Buffer ws(1 << 20);
  const std::vector<std::uint8_t> mask(1 << 16, 1);
  for (std::size_t e = 0; e < edits.size(); ++e) {
    SCOPED_TRACE("edit " + std::to_string(e));
    ProblemShape s = good;
    edits[e].first(s);
    for (int entry = 0; entry < 2; ++entry) {
      try {
        if (entry == 0) {
          workspace_size(s, config);
        } else {
          plan_from_block_mask(s, 64, 1, mask.data(), ws.workspace());
        }
        ADD_FAILURE() << "accepted";
      } catch (const Error& err) {
        const std::string msg = err.what();
        EXPECT_NE(msg.find(edits[e].second), std::string::npos) << msg;
        EXPECT_NE(msg.find("expected"), std::string::npos) << msg;
      } catch (const std::exception& err) {
        ADD_FAILURE() << "threw a non-proxyattn exception: " << err.what();
      }
    }
  }
}

// Sizes whose workspace needs more than 64 bits are an error, never a wrapped (small) size that a
// small buffer would then pass.
TEST(ShapeValidation, WorkspaceSizeOverflowIsAnError) {
  Config config;
  config.block_size = 64;
  config.min_budget_tokens = 0;
  config.dense_below_tokens = 0;
  ProblemShape s;
  s.total_tokens = 32767 * 64;  // kMaxBlocks blocks
  s.cu_seqlens = {0, static_cast<std::int32_t>(s.total_tokens)};
  s.num_qo_heads = s.num_kv_heads = std::int64_t{1} << 50;  // heads x blocks overflows
  s.head_dim = 64;
  EXPECT_THROW(workspace_size(s, config), Error);
  s.num_qo_heads = s.num_kv_heads = 8;
  s.head_dim = std::int64_t{1} << 50;  // proxy rows x head_dim x 4 bytes overflows
  EXPECT_THROW(workspace_size(s, config), Error);
  config.num_proxy_heads = 8;
  s.head_dim = std::int64_t{1} << 40;
  EXPECT_THROW(workspace_size(s, config), Error);
}

// Strides or sizes whose extent leaves int64 are rejected: kernel offsets would wrap. A product
// of sizes that wraps to 0 does not pass for an empty (layout-free) operand.
TEST(ShapeValidation, OperandExtentOverflowIsAnError) {
  std::vector<float> data(4096);
  TensorView q = TensorView::contiguous(data.data(), DType::kFloat32, {4, 2, 64});
  TensorView k = q;
  EXPECT_NO_THROW(problem_shape(q, k, {}));
  TensorView far = q;
  far.strides[0] = std::int64_t{1} << 62;  // 3 x 2^62 elements
  EXPECT_THROW(problem_shape(far, k, {}), Error);
  EXPECT_THROW(problem_shape(q, far, {}), Error);
  TensorView wraps = q;
  wraps.shape[1] = std::int64_t{1} << 32;
  wraps.shape[2] = std::int64_t{1} << 32;  // 4 x 2^64 elements: the count wraps to 0
  wraps.strides[2] = 7;
  EXPECT_THROW(problem_shape(wraps, wraps, {}), Error);
  EXPECT_THROW(wraps.numel(), Error);
  // A view of more bytes than a buffer holds, by a count that wraps, is refused.
  Buffer small(64);
  EXPECT_THROW(small.view(DType::kFloat32, {std::int64_t{1} << 62, 4}), Error);
  EXPECT_THROW(small.view(DType::kFloat32, {-2, -2}), Error);
  EXPECT_NO_THROW(small.view(DType::kFloat32, {4, 4}));
}

// The layout of a plan sizes and indexes its arrays; one edited by hand or taken from another
// problem is rejected before attention (or stats, to_dense, copies) index by it.
TEST_F(Validation, AttendRejectsAPlanWithAnEditedLayout) {
  const Plan good = plan(q_, k_, seqlens(), config_, ws_.workspace(), Runtime{2});
  const std::vector<std::function<void(PlanLayout&)>> edits = {
      [](PlanLayout& l) { l.block_size = 128; },                 // blocks of the wrong size
      [](PlanLayout& l) { l.block_size = 0; },
      [](PlanLayout& l) { l.num_blocks[0] += 1; },               // more blocks than tokens
      [](PlanLayout& l) { l.num_blocks.pop_back(); },            // fewer sequences than batch
      [](PlanLayout& l) { l.batch = 5; },
      [](PlanLayout& l) { l.cu_seqlens = {0, 150, 300}; },       // tokens moved between sequences
      [](PlanLayout& l) { l.head_offset[1] += 1; },
      [](PlanLayout& l) { l.order_offset[2] -= 1; },
      [](PlanLayout& l) { l.num_proxy_heads = 0; },
      [](PlanLayout& l) { l.num_proxy_heads = 3; },              // does not divide 2 KV heads
  };
  for (std::size_t e = 0; e < edits.size(); ++e) {
    SCOPED_TRACE("edit " + std::to_string(e));
    Plan p = good;
    edits[e](p.layout);
    expect_rejected([&] { attend(q_, k_, v_, p, out_, &lse_, Runtime{2}); }, "plan.layout");
    EXPECT_THROW(p.stats(), Error);
    EXPECT_THROW(p.to_dense(), Error);
    EXPECT_THROW(copy_to_host(p), Error);
  }
  EXPECT_NO_THROW(attend(q_, k_, v_, good, out_, &lse_, Runtime{2}));
}

// A negative thread count is an error, not "all threads" (0 means all hardware threads).
TEST_F(Validation, NegativeThreadCount) {
  const Runtime bad{-1};
  expect_rejected([&] { prefill(q_, k_, v_, seqlens(), config_, ws_.workspace(), out_, &lse_, bad); },
                  "num_threads");
  expect_rejected([&] { dense(q_, k_, v_, seqlens(), out_, &lse_, 0.0f, bad); }, "num_threads");
  expect_rejected([&] { plan(q_, k_, seqlens(), config_, ws_.workspace(), bad); }, "num_threads");
  const Plan p = plan(q_, k_, seqlens(), config_, ws_.workspace(), Runtime{2});
  expect_rejected([&] { attend(q_, k_, v_, p, out_, &lse_, bad); }, "num_threads");
}

// An enum value outside the declared ones (a cast from a bad integer) is a config error.
TEST_F(Validation, LastBlockSelectionOutOfRange) {
  config_.last_block_selection = static_cast<LastBlockSelection>(7);
  expect_rejected([&] { run_prefill(); }, "last_block_selection");
}


// An output whose elements share memory (zero strides, overlapping rows) is rejected: threads
// would race on it. Inputs may share memory (a broadcast KV head is fine).
TEST_F(Validation, OutputsWhoseElementsShareMemory) {
  const TensorView good_out = out_, good_lse = lse_;
  out_.strides[0] = 0;  // every token writes the same row
  expect_rejected([&] { run_prefill(); }, "out.strides[0]");
  out_ = good_out;
  out_.strides[1] = 0;  // every head writes the same row
  expect_rejected([&] { run_dense(); }, "out.strides[1]");
  out_ = good_out;
  out_.strides[0] = 64;  // rows of 4 heads x 64 overlap the next token's
  expect_rejected([&] { run_dense(); }, "out.strides");
  out_ = good_out;
  lse_.strides[0] = 0;  // every head writes the same lse row
  expect_rejected([&] { run_prefill(); }, "lse.strides[0]");
  lse_ = good_lse;
  // A transposed layout ([heads, tokens, head_dim] storage) and a broadcast KV head are valid.
  std::vector<float> storage(static_cast<std::size_t>(w_.total_tokens * 4 * 64));
  out_.data = storage.data();
  out_.strides[1] = w_.total_tokens * 64;
  out_.strides[0] = 64;
  k_.strides[1] = 0;
  v_.strides[1] = 0;
  EXPECT_NO_THROW(run_dense());
}


// Enum values and ranks outside their declared ranges (casts from bad integers) are errors, never
// read as "not CUDA" (which ran the CPU kernels) or past the view's shape array.
TEST_F(Validation, EnumsAndRanksOutOfRange) {
  const TensorView q = q_, k = k_, v = v_, out = out_, lse = lse_;
  q_.device = k_.device = v_.device = out_.device = lse_.device = static_cast<Device>(5);
  expect_rejected([&] { run_dense(); }, "q.device = 5");
  q_ = q, k_ = k, v_ = v, out_ = out, lse_ = lse;
  q_.dtype = k_.dtype = v_.dtype = out_.dtype = static_cast<DType>(9);
  expect_rejected([&] { run_dense(); }, "q.dtype = 9");
  TensorView bad = q;
  bad.rank = 100;
  EXPECT_THROW(bad.numel(), Error);
  EXPECT_FALSE(bad.is_contiguous());
  EXPECT_EQ(bad.shape_string(), "[rank 100]");
}


// A host Buffer whose size rounds past SIZE_MAX is an error, not an empty allocation that claims
// the size (views of it would then pass Buffer::view's size check).
TEST(BufferHostile, SizesThatWrapAreErrors) {
  for (std::size_t bytes : {std::numeric_limits<std::size_t>::max(),
                            std::numeric_limits<std::size_t>::max() - 100}) {
    try {
      Buffer b(bytes);
      ADD_FAILURE() << "Buffer(" << bytes << ") holds " << b.size() << " bytes at " << b.data();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("expected"), std::string::npos) << e.what();
    }
  }
  EXPECT_EQ(Buffer(0).size(), 0u);
}


// Zero tokens with many heads: nothing to compute or write, so nothing is allocated per head
// (std::bad_alloc escaped dense() before).
TEST(EmptyProblem, ManyHeadsAndNoTokensAllocateNothing) {
  float unused = 0.0f;
  const std::int64_t kv_heads = 725372083114082312;  // ~2^59: scratch per KV head cannot exist
  const std::int64_t heads = 3 * kv_heads;
  const TensorView q = TensorView::contiguous(&unused, DType::kFloat32, {0, heads, 8});
  const TensorView k = TensorView::contiguous(&unused, DType::kFloat32, {0, kv_heads, 8});
  TensorView out = q;
  EXPECT_NO_THROW(dense(q, k, k, {}, out, nullptr, 0.0f, Runtime{2}));
  const TensorView lse = TensorView::contiguous(&unused, DType::kFloat32, {heads, 0});
  EXPECT_NO_THROW(dense(q, k, k, {}, out, &lse, 0.0f, Runtime{2}));
}

}  // namespace
}  // namespace proxyattn
