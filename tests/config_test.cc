// tests/config_test.cc: Config defaults (docs/SPEC.md section 2), validate() ranges, derived values
// (dense_below, budget blocks, scale) and the parse functions.
//
// Run: ./build/tests/config_test
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "proxyattn/proxyattn.h"

namespace proxyattn {
namespace {

// The message of the Error that fn throws, or "" (and a test failure) when it throws none.
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw a non-proxyattn exception: " << e.what();
    return "";
  }
  ADD_FAILURE() << "expected proxyattn::Error, nothing was thrown";
  return "";
}

#define EXPECT_ERROR_MENTIONS(stmt, needle)                                   \
  do {                                                                        \
    const std::string msg_ = error_of([&] { stmt; });                         \
    EXPECT_NE(msg_.find(needle), std::string::npos)                           \
        << "message '" << msg_ << "' does not name '" << (needle) << "'";     \
  } while (0)

TEST(ConfigDefaults, MatchSpecSection2) {
  const Config c;
  EXPECT_EQ(c.block_size, 128);
  EXPECT_EQ(c.stride, 4);
  EXPECT_DOUBLE_EQ(c.gamma, 0.95);
  EXPECT_EQ(c.num_proxy_heads, 1);
  EXPECT_EQ(c.min_budget_tokens, 2048);
  EXPECT_EQ(c.max_budget_tokens, Config::kUnbounded);
  EXPECT_EQ(c.dense_below_tokens, Config::kAuto);
  EXPECT_TRUE(c.keep_sink);
  EXPECT_TRUE(c.keep_diagonal);
  EXPECT_EQ(c.last_block_selection, LastBlockSelection::kExact);
  EXPECT_EQ(c.forced_density, 0.0);  // off
  EXPECT_EQ(c.scale, 0.0f);          // 1/sqrt(head_dim)
  EXPECT_NO_THROW(c.validate());
  // dense_below default: max(2b, min_budget_tokens) = max(256, 2048).
  EXPECT_EQ(c.dense_below(), 2048);
  EXPECT_EQ(c.min_budget_blocks(), 16);
  EXPECT_EQ(c.max_budget_blocks(), Config::kUnbounded);
}

TEST(ConfigValidate, BlockSize) {
  for (int b : {64, 128}) {
    Config c;
    c.block_size = b;
    EXPECT_NO_THROW(c.validate()) << b;
  }
  for (int b : {0, -64, 32, 96, 256, 127}) {
    Config c;
    c.block_size = b;
    EXPECT_ERROR_MENTIONS(c.validate(), "config.block_size");
  }
}

// Messages locate the check by its path in the source tree, never the build machine's directories.
TEST(ConfigValidate, MessageNamesTheSourcePathOnly) {
  Config c;
  c.block_size = 96;
  try {
    c.validate();
    FAIL() << "block_size 96 accepted";
  } catch (const Error& e) {
    const std::string what = e.what();
    EXPECT_NE(what.find(" at src/"), std::string::npos) << what;
    EXPECT_EQ(what.find(" at /"), std::string::npos) << what;
  }
}

TEST(ConfigValidate, Stride) {
  for (int s : {1, 2, 4, 8, 16, 32, 64, 128}) {
    Config c;
    c.stride = s;
    EXPECT_NO_THROW(c.validate()) << s;
  }
  for (int s : {0, -1, 3, 5, 6, 256}) {
    Config c;
    c.stride = s;
    EXPECT_ERROR_MENTIONS(c.validate(), "config.stride");
  }
  Config c;
  c.block_size = 64;
  c.stride = 128;  // divides 128 but not 64
  EXPECT_ERROR_MENTIONS(c.validate(), "config.stride");
}

TEST(ConfigValidate, Gamma) {
  for (double g : {1e-9, 0.5, 0.95, 1.0}) {
    Config c;
    c.gamma = g;
    EXPECT_NO_THROW(c.validate()) << g;
  }
  for (double g : {0.0, -0.1, 1.0000001, 2.0, std::nan(""),
                   std::numeric_limits<double>::infinity()}) {
    Config c;
    c.gamma = g;
    EXPECT_ERROR_MENTIONS(c.validate(), "config.gamma");
  }
}

TEST(ConfigValidate, NumProxyHeads) {
  Config c;
  c.num_proxy_heads = 4;
  EXPECT_NO_THROW(c.validate());
  for (int g : {0, -1}) {
    c.num_proxy_heads = g;
    EXPECT_ERROR_MENTIONS(c.validate(), "config.num_proxy_heads");
  }
}

TEST(ConfigValidate, MinAndMaxBudget) {
  Config c;
  c.min_budget_tokens = 0;
  EXPECT_NO_THROW(c.validate());
  c.min_budget_tokens = -1;
  EXPECT_ERROR_MENTIONS(c.validate(), "config.min_budget_tokens");

  c = Config();
  c.max_budget_tokens = 2048;  // == min
  EXPECT_NO_THROW(c.validate());
  c.max_budget_tokens = 1 << 20;
  EXPECT_NO_THROW(c.validate());
  c.max_budget_tokens = 2047;  // < min
  EXPECT_ERROR_MENTIONS(c.validate(), "config.max_budget_tokens");
  c.max_budget_tokens = -2;
  EXPECT_ERROR_MENTIONS(c.validate(), "config.max_budget_tokens");

  c = Config();
  c.min_budget_tokens = 0;
  c.max_budget_tokens = 0;  // an empty budget is not a budget
  EXPECT_ERROR_MENTIONS(c.validate(), "config.max_budget_tokens");
  c.max_budget_tokens = 1;
  EXPECT_NO_THROW(c.validate());
}

TEST(ConfigValidate, DenseBelow) {
  Config c;
  for (std::int64_t d : {Config::kAuto, std::int64_t{0}, std::int64_t{1}, std::int64_t{100000}}) {
    c.dense_below_tokens = d;
    EXPECT_NO_THROW(c.validate()) << d;
  }
  c.dense_below_tokens = -2;
  EXPECT_ERROR_MENTIONS(c.validate(), "config.dense_below_tokens");
}

TEST(ConfigValidate, ForcedDensity) {
  Config c;
  for (double d : {0.0, 1e-6, 0.05, 0.5, 1.0}) {
    c.forced_density = d;
    EXPECT_NO_THROW(c.validate()) << d;
  }
  for (double d : {-0.5, 1.5, std::nan(""), std::numeric_limits<double>::infinity()}) {
    c.forced_density = d;
    EXPECT_ERROR_MENTIONS(c.validate(), "config.forced_density");
  }
}

TEST(ConfigValidate, Scale) {
  Config c;
  c.scale = 0.25f;
  EXPECT_NO_THROW(c.validate());
  for (float s : {-1.0f, std::numeric_limits<float>::infinity(), std::nanf("")}) {
    c.scale = s;
    EXPECT_ERROR_MENTIONS(c.validate(), "config.scale");
  }
}

TEST(ConfigValidate, MessageNamesValueAndExpectation) {
  Config c;
  c.gamma = 1.5;
  const std::string msg = error_of([&] { c.validate(); });
  EXPECT_NE(msg.find("1.5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected"), std::string::npos) << msg;
}

TEST(ConfigDerived, DenseBelowAutoRule) {
  Config c;
  c.min_budget_tokens = 0;
  EXPECT_EQ(c.dense_below(), 256);  // 2b, b = 128
  c.block_size = 64;
  EXPECT_EQ(c.dense_below(), 128);  // 2b, b = 64
  c.min_budget_tokens = 129;
  EXPECT_EQ(c.dense_below(), 129);  // min budget wins
  c.min_budget_tokens = 4096;
  EXPECT_EQ(c.dense_below(), 4096);
  c.dense_below_tokens = 0;  // explicit value wins over the rule
  EXPECT_EQ(c.dense_below(), 0);
  c.dense_below_tokens = 77;
  EXPECT_EQ(c.dense_below(), 77);
}

TEST(ConfigDerived, BudgetBlocksRoundUp) {
  Config c;
  c.block_size = 64;
  c.min_budget_tokens = 0;
  EXPECT_EQ(c.min_budget_blocks(), 0);
  c.min_budget_tokens = 1;
  EXPECT_EQ(c.min_budget_blocks(), 1);
  c.min_budget_tokens = 64;
  EXPECT_EQ(c.min_budget_blocks(), 1);
  c.min_budget_tokens = 65;
  EXPECT_EQ(c.min_budget_blocks(), 2);
  c.block_size = 128;
  c.min_budget_tokens = 2048;
  EXPECT_EQ(c.min_budget_blocks(), 16);
  c.min_budget_tokens = 2049;
  EXPECT_EQ(c.min_budget_blocks(), 17);

  c.max_budget_tokens = Config::kUnbounded;
  EXPECT_EQ(c.max_budget_blocks(), Config::kUnbounded);
  c.max_budget_tokens = 1;
  EXPECT_EQ(c.max_budget_blocks(), 1);
  c.max_budget_tokens = 128;
  EXPECT_EQ(c.max_budget_blocks(), 1);
  c.max_budget_tokens = 129;
  EXPECT_EQ(c.max_budget_blocks(), 2);
  c.block_size = 64;
  c.max_budget_tokens = 129;
  EXPECT_EQ(c.max_budget_blocks(), 3);
}

TEST(ConfigDerived, ScaleFor) {
  Config c;
  EXPECT_FLOAT_EQ(c.scale_for(64), 0.125f);
  EXPECT_FLOAT_EQ(c.scale_for(128), static_cast<float>(1.0 / std::sqrt(128.0)));
  c.scale = 0.5f;
  EXPECT_EQ(c.scale_for(64), 0.5f);
}

TEST(ConfigParse, LastBlockSelection) {
  EXPECT_EQ(parse_last_block_selection("exact"), LastBlockSelection::kExact);
  EXPECT_EQ(parse_last_block_selection("proxy"), LastBlockSelection::kProxy);
  EXPECT_STREQ(to_string(LastBlockSelection::kExact), "exact");
  EXPECT_STREQ(to_string(LastBlockSelection::kProxy), "proxy");
  for (const char* bad : {"", "Exact", "paper", "exact "}) {
    EXPECT_ERROR_MENTIONS(parse_last_block_selection(bad), "last_block_selection");
  }
}

TEST(ConfigParse, DType) {
  EXPECT_EQ(parse_dtype("fp32"), DType::kFloat32);
  EXPECT_EQ(parse_dtype("bf16"), DType::kBFloat16);
  EXPECT_EQ(parse_dtype("fp16"), DType::kFloat16);
  for (DType d : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    EXPECT_EQ(parse_dtype(to_string(d)), d);
  }
  EXPECT_EQ(dtype_size(DType::kFloat32), 4u);
  EXPECT_EQ(dtype_size(DType::kBFloat16), 2u);
  EXPECT_EQ(dtype_size(DType::kFloat16), 2u);
  for (const char* bad : {"", "FP32", "int8", "f32"}) {
    EXPECT_THROW(parse_dtype(bad), Error) << bad;
  }
}

}  // namespace
}  // namespace proxyattn
