// tests/hostile_test.cc: hostile input at the library level (docs/SPEC.md section 6): every bad
// input is a proxyattn::Error with a short, printable, one-line message that shows why it failed;
// nothing crashes, hangs, allocates before validating, reports NaN as a clean number, or leaves a
// half-written file. The command line's own cases live in tests/cli/hostile.sh.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "common/check.h"
#include "proxyattn/config.h"
#include "proxyattn/oracle/compare.h"
#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/workload.h"
#include "proxyattn/safetensors.h"

namespace proxyattn {
namespace {

namespace st = safetensors;

// The message of the Error fn throws (fails the test when it throws nothing or something else).
template <typename Fn>
std::string error_of(Fn fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "not a proxyattn::Error: " << e.what();
    return "";
  }
  ADD_FAILURE() << "no error";
  return "";
}

// One printable line of bounded length.
void expect_clean(const std::string& m, std::size_t max_size = 700) {
  EXPECT_FALSE(m.empty());
  EXPECT_LE(m.size(), max_size) << m.substr(0, 200);
  for (char c : m) {
    const auto u = static_cast<unsigned char>(c);
    ASSERT_TRUE(u >= 0x20 && u < 0x7f) << "byte " << int(u) << " in: " << m.substr(0, 200);
  }
}

// A file: 8-byte little-endian header length, the header text, then data.
std::vector<std::uint8_t> file_bytes(const std::string& header, const std::string& data = "") {
  std::vector<std::uint8_t> b(8);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) b[i] = static_cast<std::uint8_t>(n >> (8 * i));
  b.insert(b.end(), header.begin(), header.end());
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

std::string parse_error(const std::string& header, const std::string& data = "") {
  const std::vector<std::uint8_t> b = file_bytes(header, data);
  return error_of([&] { st::parse(b.data(), b.size(), "hostile.safetensors"); });
}

// ---- safetensors: malformed headers are clear errors -------------------------------------------

struct BadHeader {
  const char* name;
  std::string header;
  std::string data;
  const char* expected;  // a piece of the message
};

class SafetensorsBadHeader : public ::testing::TestWithParam<BadHeader> {};

TEST_P(SafetensorsBadHeader, IsAClearError) {
  const std::string m = parse_error(GetParam().header, GetParam().data);
  expect_clean(m);
  EXPECT_NE(m.find(GetParam().expected), std::string::npos) << m;
}

const std::string kEntry = R"({"dtype":"F32","shape":[1],"data_offsets":[0,4]})";

INSTANTIATE_TEST_SUITE_P(
    Headers, SafetensorsBadHeader,
    ::testing::Values(
        BadHeader{"NulThenJunk", std::string("{}\0junk", 7), "", "NUL"},
        BadHeader{"NulPadding", std::string("{}  \0\0\0\0", 8), "", "NUL"},
        BadHeader{"NulInsideName", std::string("{\"a\0b\":1}", 9), "", "NUL"},
        BadHeader{"JunkAfterObject", "{} junk", "", "not valid JSON"},
        BadHeader{"SecondObject", "{}{}", "", "not valid JSON"},
        BadHeader{"NotJson", "hello", "", "not valid JSON"},
        BadHeader{"Empty", "", "", "not valid JSON"},
        BadHeader{"TopArray", "[]", "", "expected an object"},
        BadHeader{"TopNumber", "3", "", "expected an object"},
        BadHeader{"TooDeep", R"({"a":{"b":{"c":{}}}})", "", "nests deeper"},
        BadHeader{"EntryNotObject", R"({"q":5})", "", "expected an object"},
        BadHeader{"NoDtype", R"({"q":{"shape":[1],"data_offsets":[0,4]}})", "1234", "no 'dtype'"},
        BadHeader{"NoShape", R"({"q":{"dtype":"F32","data_offsets":[0,4]}})", "1234", "no 'shape'"},
        BadHeader{"NoOffsets", R"({"q":{"dtype":"F32","shape":[1]}})", "1234", "no 'data_offsets'"},
        BadHeader{"UnknownDtype", R"({"q":{"dtype":"F12","shape":[1],"data_offsets":[0,4]}})",
                  "1234", "unknown dtype"},
        BadHeader{"DtypeNumber", R"({"q":{"dtype":4,"shape":[1],"data_offsets":[0,4]}})", "1234",
                  "expected a string"},
        BadHeader{"NegativeExtent", R"({"q":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                  "1234", "not an integer"},
        BadHeader{"FloatExtent", R"({"q":{"dtype":"F32","shape":[1.0],"data_offsets":[0,4]}})",
                  "1234", "not an integer"},
        BadHeader{"HugeExtent",
                  R"({"q":{"dtype":"F32","shape":[18446744073709551615],"data_offsets":[0,4]}})",
                  "1234", "not an integer"},
        BadHeader{"NumelOverflow",
                  R"({"q":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}})",
                  "1234", "int64"},
        BadHeader{"BytesOverflow",
                  R"({"q":{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,4]}})",
                  "1234", "int64"},
        BadHeader{"OffsetsReversed", R"({"q":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
                  "1234", "out of order"},
        BadHeader{"OffsetsPastData", R"({"q":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})",
                  "1234", "exceed the data section"},
        BadHeader{"OffsetsOneNumber", R"({"q":{"dtype":"F32","shape":[1],"data_offsets":[0]}})",
                  "1234", "not a pair"},
        BadHeader{"SizeMismatch", R"({"q":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})",
                  "1234", "needs 8"},
        BadHeader{"Overlap",
                  R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                  R"("b":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                  "1234", "overlap"},
        BadHeader{"Gap", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", "12345678",
                  "unused bytes"},
        BadHeader{"TrailingData", R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                  "12345678", "unused bytes"},
        BadHeader{"DuplicateName", "{\"a\":" + kEntry + ",\"a\":" + kEntry + "}", "1234",
                  "duplicate tensor name"},
        BadHeader{"DuplicateField",
                  R"({"a":{"dtype":"F32","dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                  "1234", "duplicate key"},
        BadHeader{"MetadataNotObject", R"({"__metadata__":3})", "", "__metadata__"},
        BadHeader{"MetadataNumber", R"({"__metadata__":{"k":3}})", "", "expected a string"},
        BadHeader{"BadUtf8", "{\"\xff\":1}", "", "not valid JSON"}),
    [](const ::testing::TestParamInfo<BadHeader>& info) { return std::string(info.param.name); });

TEST(SafetensorsHostile, ShortAndLyingLengths) {
  for (std::size_t n = 0; n < 8; ++n) {
    const std::vector<std::uint8_t> b(n, 0);
    expect_clean(error_of([&] { st::parse(b.data(), b.size(), "short"); }));
  }
  std::vector<std::uint8_t> b = file_bytes("{}");
  b[0] = 200;  // header length past the end of the file
  expect_clean(error_of([&] { st::parse(b.data(), b.size(), "x"); }));
  std::vector<std::uint8_t> huge(16, 0xff);  // 2^64 - 1
  expect_clean(error_of([&] { st::parse(huge.data(), huge.size(), "x"); }));
  expect_clean(error_of([] { st::parse(nullptr, 12, "x"); }));
}

TEST(SafetensorsHostile, SpacePaddingIsAccepted) {
  const std::vector<std::uint8_t> b = file_bytes("{}      ");
  EXPECT_TRUE(st::parse(b.data(), b.size(), "x").tensors.empty());
}

TEST(SafetensorsHostile, HugeNameIsCutInMessages) {
  const std::string name(1 << 20, 'n');
  const std::string m = parse_error("{\"" + name + R"(":{"dtype":"F12","shape":[],"data_offsets":[0,0]}})");
  expect_clean(m);
  EXPECT_NE(m.find("..."), std::string::npos);
}

TEST(SafetensorsHostile, EscapeSequencesAndNewlinesAreEscaped) {
  for (const std::string name : {"\\u001b[2J\\u001b[31mforged", "a\\nerror: forged line",
                                 "bell\\u0007\\r", "del\\u007f"}) {
    const std::string m = parse_error("{\"" + name + R"(":{"dtype":"F12","shape":[],"data_offsets":[0,0]}})");
    expect_clean(m);
    EXPECT_NE(m.find("\\x"), std::string::npos) << m;
  }
  // Also duplicates and overlaps name the tensors escaped.
  const std::string dup = "{\"x\\u001b\":" + kEntry + ",\"x\\u001b\":" + kEntry + "}";
  expect_clean(parse_error(dup, "1234"));
  // And the file name itself.
  const std::vector<std::uint8_t> b = file_bytes("[]");
  expect_clean(error_of([&] { st::parse(b.data(), b.size(), "evil\n\x1b[2J.safetensors"); }));
}

// 400k empty tensors in a ~24 MB header: parsing is linear (a quadratic parse takes minutes and
// the test's timeout catches it); the tensors keep the header's order.
TEST(SafetensorsHostile, ManyTensorsParseLinearlyInOrder) {
  const int n = 400000;
  std::string header = "{";
  for (int i = 0; i < n; ++i) {
    // Names that sort differently from their order: the order must be the header's.
    header += (i ? ",\"" : "\"") + std::to_string(n - i) + "_t\":" +
              R"({"dtype":"F32","shape":[0,4],"data_offsets":[0,0]})";
  }
  header += "}";
  ASSERT_GT(header.size(), 20u << 20);
  const std::vector<std::uint8_t> b = file_bytes(header);
  const st::File f = st::parse(b.data(), b.size(), "many");
  ASSERT_EQ(f.tensors.size(), static_cast<std::size_t>(n));
  EXPECT_EQ(f.tensors.front().name, std::to_string(n) + "_t");
  EXPECT_EQ(f.tensors.back().name, "1_t");
}

TEST(SafetensorsHostile, OrderIsTheHeaders) {
  const std::string header = R"({"z":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})";
  const std::vector<std::uint8_t> b = file_bytes(header, "12345678");
  const st::File f = st::parse(b.data(), b.size(), "x");
  ASSERT_EQ(f.tensors.size(), 2u);
  EXPECT_EQ(f.tensors[0].name, "z");
  EXPECT_EQ(f.tensors[1].name, "a");
}

// ---- safetensors: writes are atomic -----------------------------------------------------------

class AtomicWrite : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("proxyattn_hostile_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
            "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::size_t entries() const {
    std::size_t n = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir_)) n += e.exists() ? 1 : 0;
    return n;
  }
  st::File small_file() const {
    st::File f;
    st::Tensor t;
    t.name = "w";
    t.dtype = "F32";
    t.shape = {2};
    t.data.assign(8, 1);
    f.tensors.push_back(t);
    return f;
  }
  std::filesystem::path dir_;
};

TEST_F(AtomicWrite, SuccessLeavesOnlyTheFile) {
  const std::string path = (dir_ / "a.safetensors").string();
  st::write(path, small_file());
  EXPECT_EQ(entries(), 1u);
  EXPECT_EQ(st::read(path).tensors.size(), 1u);
}

TEST_F(AtomicWrite, RejectedFileLeavesNothingAndKeepsTheOldFile) {
  const std::string path = (dir_ / "a.safetensors").string();
  st::write(path, small_file());
  const auto before = std::filesystem::file_size(path);
  st::File bad = small_file();
  bad.tensors[0].data.resize(3);  // does not match the shape
  expect_clean(error_of([&] { st::write(path, bad); }));
  EXPECT_EQ(entries(), 1u);
  EXPECT_EQ(std::filesystem::file_size(path), before);
}

TEST_F(AtomicWrite, MissingFolderIsAnError) {
  const std::string path = (dir_ / "no" / "a.safetensors").string();
  expect_clean(error_of([&] { st::write(path, small_file()); }));
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_EQ(entries(), 0u);
}

TEST_F(AtomicWrite, DeviceFileIsAnErrorNotWritten) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full";
  expect_clean(error_of([&] { st::write("/dev/full", small_file()); }));
}

TEST_F(AtomicWrite, FolderAsFileIsAnError) {
  expect_clean(error_of([&] { st::write(dir_.string(), small_file()); }));
  EXPECT_TRUE(std::filesystem::is_directory(dir_));
  EXPECT_EQ(entries(), 0u);
}

TEST_F(AtomicWrite, ReadOfFolderOrMissingFileIsAnError) {
  expect_clean(error_of([&] { st::read(dir_.string()); }));
  expect_clean(error_of([&] { st::read((dir_ / "missing\x1b[2J").string()); }));
}

// ---- config: strict values, messages that show why --------------------------------------------

struct BadField {
  const char* field;
  std::string text;
};

class ConfigBadField : public ::testing::TestWithParam<BadField> {};

TEST_P(ConfigBadField, IsRejected) {
  Config c;
  const std::string m = error_of([&] {
    set_config_field(c, GetParam().field, GetParam().text);
    c.validate();
  });
  expect_clean(m);
  EXPECT_NE(m.find(GetParam().field), std::string::npos) << m;
}

INSTANTIATE_TEST_SUITE_P(
    Fields, ConfigBadField,
    ::testing::Values(
        BadField{"forced_density", "0"}, BadField{"forced_density", "-0.5"},
        BadField{"forced_density", "1.0000001"}, BadField{"forced_density", "nan"},
        BadField{"forced_density", "inf"}, BadField{"forced_density", "0.5x"},
        BadField{"forced_density", " 0.5"}, BadField{"forced_density", ""},
        BadField{"gamma", "1.0000001"}, BadField{"gamma", "0"}, BadField{"gamma", "-1"},
        BadField{"gamma", "nan"}, BadField{"gamma", "1e999"}, BadField{"gamma", "0.9 "},
        BadField{"block_size", "96"}, BadField{"block_size", "64x"}, BadField{"block_size", "0x40"},
        BadField{"block_size", "99999999999999999999"}, BadField{"stride", "0"},
        BadField{"stride", "3"}, BadField{"stride", "-8"}, BadField{"num_proxy_heads", "0"},
        BadField{"min_budget_tokens", "-1"}, BadField{"min_budget_tokens", "9223372036854775808"},
        BadField{"min_budget_tokens", "1e3"}, BadField{"max_budget_tokens", "0"},
        BadField{"dense_below_tokens", "-2"}, BadField{"keep_sink", "maybe"},
        BadField{"keep_diagonal", "2"}, BadField{"last_block_selection", "\x1b[2Jexact"},
        BadField{"scale", "-1"}, BadField{"scale", "inf"}));

TEST(ConfigHostile, ValidateShowsEnoughDigits) {
  Config c;
  c.gamma = 1.0000001;
  const std::string m = error_of([&] { c.validate(); });
  EXPECT_NE(m.find("1.0000001"), std::string::npos) << m;
  c = Config{};
  c.forced_density = 1.0000000000000002;
  EXPECT_NE(error_of([&] { c.validate(); }).find("1.0000000000000002"), std::string::npos);
  c = Config{};
  c.scale = -1e-30f;
  EXPECT_NE(error_of([&] { c.validate(); }).find("-1e-30"), std::string::npos);
}

TEST(ConfigHostile, SetFieldShowsTheTextGiven) {
  Config c;
  EXPECT_NE(error_of([&] { set_config_field(c, "gamma", "1.0000001"); c.validate(); })
                .find("1.0000001"),
            std::string::npos);
}

TEST(ConfigHostile, HugeAndEscapedValuesAreCut) {
  Config c;
  const std::string m = error_of([&] { set_config_field(c, "gamma", std::string(1 << 20, '9')); });
  expect_clean(m);
  const std::string e = error_of([&] { set_config_field(c, "keep_sink", "\n\x1b]0;title\x07"); });
  expect_clean(e);
  EXPECT_NE(e.find("\\x1b"), std::string::npos) << e;
}

TEST(ConfigHostile, UnknownFieldIsAnError) {
  Config c;
  expect_clean(error_of([&] { set_config_field(c, "no_such_field", "1"); }));
  expect_clean(error_of([&] { set_config_field(c, std::string(5000, 'x'), "1"); }));
}

TEST(ConfigHostile, LargestMinBudgetWorks) {
  Config c;
  set_config_field(c, "min_budget_tokens", "9223372036854775807");
  c.validate();
  EXPECT_EQ(c.min_budget_tokens, std::numeric_limits<std::int64_t>::max());
  EXPECT_GT(c.min_budget_blocks(), 0);
  EXPECT_GE(c.max_budget_blocks(), c.min_budget_blocks());
  c.block_size = 128;
  EXPECT_GT(c.min_budget_blocks(), 0);
}

TEST(ConfigHostile, DensityOneAndOffAreAccepted) {
  Config c;
  set_config_field(c, "forced_density", "1");
  c.validate();
  set_config_field(c, "forced_density", "off");
  c.validate();
  EXPECT_EQ(c.forced_density, 0.0);
}

// ---- messages ---------------------------------------------------------------------------------

TEST(MessageFormat, ShortestRoundTrip) {
  EXPECT_EQ(detail::shortest_text(1.0000001), "1.0000001");
  EXPECT_EQ(detail::shortest_text(0.85), "0.85");
  EXPECT_EQ(detail::shortest_text(1.0), "1");
  EXPECT_EQ(detail::shortest_text(0.1f), "0.1");
  EXPECT_EQ(detail::shortest_text(std::nan("")), "nan");
  EXPECT_EQ(detail::shortest_text(-INFINITY), "-inf");
  const double third = 1.0 / 3.0;
  EXPECT_EQ(std::strtod(detail::shortest_text(third).c_str(), nullptr), third);
}

TEST(MessageFormat, Printable) {
  EXPECT_EQ(detail::printable("abc"), "abc");
  EXPECT_EQ(detail::printable("a\nb"), "a\\x0ab");
  EXPECT_EQ(detail::printable("\x1b[2J"), "\\x1b[2J");
  EXPECT_EQ(detail::printable("\\"), "\\x5c");
  EXPECT_EQ(detail::printable(std::string(100, 'x')), std::string(64, 'x') + "...");
  EXPECT_EQ(detail::printable("\xc3\xa9"), "\\xc3\\xa9");
  EXPECT_EQ(detail::printable(std::string("a\0b", 3)), "a\\x00b");
}

// ---- workload generator: validate before allocating -------------------------------------------

struct BadSpec {
  const char* name;
  std::vector<std::int32_t> seq_lens;
  std::int64_t heads, kv_heads, head_dim;
};

class WorkloadBadSpec : public ::testing::TestWithParam<BadSpec> {};

TEST_P(WorkloadBadSpec, IsAnErrorBeforeAllocating) {
  const BadSpec& s = GetParam();
  testing::WorkloadSpec spec;
  spec.seq_lens = s.seq_lens;
  spec.num_qo_heads = s.heads;
  spec.num_kv_heads = s.kv_heads;
  spec.head_dim = s.head_dim;
  expect_clean(error_of([&] { testing::make_workload(spec); }));
}

constexpr std::int32_t kMax32 = std::numeric_limits<std::int32_t>::max();
constexpr std::int64_t kMax64 = std::numeric_limits<std::int64_t>::max();

INSTANTIATE_TEST_SUITE_P(
    Specs, WorkloadBadSpec,
    ::testing::Values(BadSpec{"ZeroHeads", {64}, 0, 2, 64}, BadSpec{"NegativeHeads", {64}, -2, 2, 64},
                      BadSpec{"ZeroKvHeads", {64}, 4, 0, 64},
                      BadSpec{"NegativeKvHeads", {64}, 4, -1, 64},
                      BadSpec{"KvNotDividing", {64}, 4, 3, 64}, BadSpec{"SmallHeadDim", {64}, 4, 2, 4},
                      BadSpec{"NegativeHeadDim", {64}, 4, 2, -64},
                      BadSpec{"NegativeLength", {64, -1}, 4, 2, 64},
                      BadSpec{"TokensOverflowInt32", {kMax32, kMax32}, 4, 2, 64},
                      BadSpec{"HugeHeadDim", {1 << 20}, 4, 2, kMax64 / 2},
                      BadSpec{"HugeHeads", {1 << 20}, kMax64 / 4, 1, 64},
                      BadSpec{"HugeProduct", {1 << 30}, 1 << 20, 1, 1 << 16}),
    [](const ::testing::TestParamInfo<BadSpec>& info) { return std::string(info.param.name); });

TEST(WorkloadHostile, SmallValidSpecWorks) {
  const testing::Workload w = testing::make_workload({65}, 4, 2, 64, DType::kFloat32);
  EXPECT_EQ(w.total_tokens, 65);
}

// ---- metrics: NaN is never skipped ------------------------------------------------------------

class NanMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    w_ = testing::make_workload({130}, 2, 1, 64, DType::kFloat32, testing::WorkloadKind::kRandom, 3);
    ref_ = testing::reference_dense(w_);
    out_ = testing::make_output(w_);
    auto* o = static_cast<float*>(out_.o.data());
    for (std::size_t e = 0; e < ref_.out.size(); ++e) o[e] = static_cast<float>(ref_.out[e]);
    auto* l = static_cast<float*>(out_.lse.data());
    for (std::size_t e = 0; e < ref_.lse.size(); ++e) l[e] = static_cast<float>(ref_.lse[e]);
  }
  OutputError compare() {
    return compare_output(testing::operands_of(w_, &out_), ref_.out, ref_.lse);
  }
  testing::Workload w_;
  testing::Reference ref_;
  testing::Output out_;
};

TEST_F(NanMetrics, CleanOutputConforms) {
  const OutputError e = compare();
  EXPECT_LE(e.rel_error, 1e-6);
  EXPECT_TRUE(output_conforms(e, 1e-5, DType::kFloat32));
}

TEST_F(NanMetrics, OneNanInTheLastHeadSurfaces) {
  static_cast<float*>(out_.o.data())[(129 * 2 + 1) * 64 + 5] = NAN;  // last token, head 1
  const OutputError e = compare();
  EXPECT_TRUE(std::isnan(e.rel_error) || e.non_finite > 0);
  EXPECT_TRUE(std::isnan(e.rel_error_per_head[1]) || e.non_finite > 0);
  EXPECT_FALSE(e.rel_error == 0.0 && e.non_finite == 0);
  EXPECT_FALSE(output_conforms(e, 1e-5, DType::kFloat32));
}

TEST_F(NanMetrics, NanInTheFirstHeadIsNotMaskedByALaterHead) {
  static_cast<float*>(out_.o.data())[0] = NAN;  // token 0, head 0
  const OutputError e = compare();
  EXPECT_TRUE(std::isnan(e.rel_error)) << e.rel_error;
  EXPECT_FALSE(output_conforms(e, 1e-5, DType::kFloat32));
}

TEST_F(NanMetrics, NanLseSurfaces) {
  static_cast<float*>(out_.lse.data())[3] = NAN;
  const OutputError e = compare();
  EXPECT_FALSE(e.lse_max_abs_error <= 1e-3) << e.lse_max_abs_error;
  EXPECT_FALSE(output_conforms(e, 1e-5, DType::kFloat32));
}

TEST_F(NanMetrics, DescribeMismatchesReportsNan) {
  static_cast<float*>(out_.o.data())[7] = NAN;
  const std::string text = testing::describe_mismatches(w_, out_, ref_, 1e-5, 4);
  EXPECT_NE(text.find("max abs nan"), std::string::npos) << text;
}

}  // namespace
}  // namespace proxyattn
