// tests/safetensors_test.cc: the safetensors reader and writer and the Q/K/V contract.
//
// Run: ./build/tests/safetensors_test
// Variants:
//   SafetensorsRoundTrip/*    serialize -> parse for every dtype of the format
//   SafetensorsBadInput/*     one malformed file per error path, message checked
//   SafetensorsQkv*           read_qkv / write_qkv on generated files, and each contract violation
//   SafetensorsCorpus.*       writes fuzz/corpus/ seeds when PROXYATTN_FUZZ_CORPUS_DIR is set:
//     PROXYATTN_FUZZ_CORPUS_DIR=fuzz/corpus ./build/tests/safetensors_test
//         --gtest_filter='SafetensorsCorpus.*'   (one command line)
#include "proxyattn/safetensors.h"

#include <algorithm>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace proxyattn::safetensors {
namespace {

using Bytes = std::vector<std::uint8_t>;

constexpr char kSource[] = "data.safetensors";

// Deterministic bytes; each tensor gets its own seed.
Bytes random_bytes(std::size_t size, std::uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes bytes(size);
  for (auto& b : bytes) b = static_cast<std::uint8_t>(rng());
  return bytes;
}

Tensor make_tensor(const std::string& name, const std::string& dtype,
                   std::vector<std::int64_t> shape, std::uint32_t seed) {
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.data = random_bytes(static_cast<std::size_t>(tensor.numel()) * element_size(dtype), seed);
  return tensor;
}

// A file from header text and a data section of data_size patterned bytes, with the header
// length taken from the text unless header_size says otherwise.
Bytes raw_file(const std::string& header, std::size_t data_size, std::uint64_t header_size) {
  // Sized once and filled by index: GCC 12 warns (-Warray-bounds, a false positive) on a
  // vector insert after a sized construction at -O2.
  Bytes bytes(8 + header.size() + data_size);
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<std::uint8_t>(header_size >> (8 * i));
  std::copy(header.begin(), header.end(), bytes.begin() + 8);
  for (std::size_t i = 0; i < data_size; ++i) {
    bytes[8 + header.size() + i] = static_cast<std::uint8_t>(i);
  }
  return bytes;
}
Bytes raw_file(const std::string& header, std::size_t data_size) {
  return raw_file(header, data_size, header.size());
}

std::uint64_t header_size_of(const Bytes& bytes) {
  std::uint64_t size = 0;
  for (int i = 0; i < 8; ++i) size |= static_cast<std::uint64_t>(bytes[i]) << (8 * i);
  return size;
}

std::string temp_path(const std::string& name) {
  return ::testing::TempDir() + "proxyattn_safetensors_test_" + name;
}

// Runs fn, expecting proxyattn::Error whose message contains every word.
template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& words) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one containing '" << words.front() << "'";
  } catch (const Error& e) {
    const std::string message = e.what();
    for (const std::string& word : words) {
      EXPECT_NE(message.find(word), std::string::npos)
          << "message: " << message << "\nmissing: " << word;
    }
  }
}

void expect_same(const File& a, const File& b) {
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    EXPECT_EQ(a.tensors[i].name, b.tensors[i].name);
    EXPECT_EQ(a.tensors[i].dtype, b.tensors[i].dtype);
    EXPECT_EQ(a.tensors[i].shape, b.tensors[i].shape);
    EXPECT_EQ(a.tensors[i].data, b.tensors[i].data) << a.tensors[i].name;
  }
  EXPECT_EQ(a.metadata, b.metadata);
}

// --- round trip ----------------------------------------------------------------------------------

class SafetensorsRoundTrip : public ::testing::TestWithParam<const char*> {};

TEST_P(SafetensorsRoundTrip, PreservesTensors) {
  const std::string dtype = GetParam();
  File file;
  file.tensors.push_back(make_tensor("matrix", dtype, {3, 5}, 1));
  file.tensors.push_back(make_tensor("scalar", dtype, {}, 2));
  file.tensors.push_back(make_tensor("empty", dtype, {0, 4}, 3));
  file.tensors.push_back(make_tensor("cube", dtype, {2, 1, 7}, 4));
  const Bytes bytes = serialize(file);
  expect_same(file, parse(bytes.data(), bytes.size(), kSource));
}

TEST_P(SafetensorsRoundTrip, ThroughDisk) {
  File file;
  file.tensors.push_back(make_tensor("t", GetParam(), {4, 3}, 5));
  const std::string path = temp_path(std::string("round_trip_") + GetParam());
  write(path, file);
  expect_same(file, read(path));
}

INSTANTIATE_TEST_SUITE_P(Dtype, SafetensorsRoundTrip,
                         ::testing::Values("BOOL", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0",
                                           "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "I64",
                                           "U64", "F64"),
                         [](const auto& info) { return std::string(info.param); });

TEST(SafetensorsFormat, HeaderIsSpacePaddedToEightBytes) {
  for (int name_length = 1; name_length <= 9; ++name_length) {
    File file;
    file.tensors.push_back(make_tensor(std::string(name_length, 'x'), "U8", {3}, 6));
    const Bytes bytes = serialize(file);
    const std::uint64_t header_size = header_size_of(bytes);
    EXPECT_EQ(header_size % 8, 0u);
    EXPECT_EQ(bytes.size(), 8 + header_size + 3);
    EXPECT_EQ(bytes[8], '{');
    const std::string header(bytes.begin() + 8, bytes.begin() + 8 + header_size);
    const std::size_t last = header.find_last_not_of(' ');
    EXPECT_EQ(header[last], '}');
  }
}

TEST(SafetensorsFormat, DataIsAlignedToElementSize) {
  File file;
  file.tensors.push_back(make_tensor("byte", "U8", {3}, 7));
  file.tensors.push_back(make_tensor("half", "F16", {3}, 8));
  file.tensors.push_back(make_tensor("double", "F64", {3}, 9));
  file.tensors.push_back(make_tensor("float", "F32", {1}, 10));
  const Bytes bytes = serialize(file);
  const std::uint64_t header_size = header_size_of(bytes);
  const std::string header(bytes.begin() + 8, bytes.begin() + 8 + header_size);
  // Wider elements go first: F64 at 0, F32 at 24, F16 at 28, U8 at 34.
  EXPECT_NE(header.find(R"("double":{"dtype":"F64","shape":[3],"data_offsets":[0,24]})"),
            std::string::npos)
      << header;
  EXPECT_NE(header.find(R"("half":{"dtype":"F16","shape":[3],"data_offsets":[28,34]})"),
            std::string::npos)
      << header;
  // The header keeps the caller's order.
  EXPECT_LT(header.find("\"byte\""), header.find("\"half\""));
  expect_same(file, parse(bytes.data(), bytes.size(), kSource));
}

TEST(SafetensorsFormat, MetadataRoundTrips) {
  File file;
  file.metadata["format"] = "pt";
  file.metadata["note"] = "caf\xc3\xa9 \"quoted\"";
  file.tensors.push_back(make_tensor("w", "F32", {2}, 11));
  const Bytes bytes = serialize(file);
  expect_same(file, parse(bytes.data(), bytes.size(), kSource));
}

TEST(SafetensorsFormat, EmptyFileHasNoTensors) {
  const Bytes bytes = serialize(File{});
  EXPECT_EQ(bytes.size(), 16u);  // 8 + "{}" padded to 8
  const File file = parse(bytes.data(), bytes.size(), kSource);
  EXPECT_TRUE(file.tensors.empty());
  EXPECT_TRUE(file.metadata.empty());
}

TEST(SafetensorsFormat, ReadsHandWrittenFile) {
  // Header order differs from data order, and whitespace surrounds the JSON.
  const std::string header =
      R"( {"b": {"dtype": "I32", "shape": [2], "data_offsets": [4, 12]},)"
      R"( "a": {"dtype": "U8", "shape": [2, 2], "data_offsets": [0, 4]}}   )";
  const Bytes bytes = raw_file(header, 12);
  const File file = parse(bytes.data(), bytes.size(), kSource);
  ASSERT_EQ(file.tensors.size(), 2u);
  EXPECT_EQ(file.tensors[0].name, "b");
  EXPECT_EQ(file.tensors[1].name, "a");
  EXPECT_EQ(file.tensors[1].data, (Bytes{0, 1, 2, 3}));
  EXPECT_EQ(file.tensors[0].data, (Bytes{4, 5, 6, 7, 8, 9, 10, 11}));
  ASSERT_NE(file.find("a"), nullptr);
  EXPECT_EQ(file.find("a")->shape, (std::vector<std::int64_t>{2, 2}));
  EXPECT_EQ(file.find("c"), nullptr);
}

// --- bad input -----------------------------------------------------------------------------------

struct BadCase {
  std::string name;
  Bytes bytes;
  std::vector<std::string> words;  // every one must appear in the message
};

// A header with one U8 tensor entry `body` (the JSON after the name) named "t".
std::string one_entry(const std::string& body) { return R"({"t":)" + body + "}"; }

std::vector<BadCase> bad_cases() {
  std::vector<BadCase> cases;
  auto add = [&](std::string name, Bytes bytes, std::vector<std::string> words) {
    words.insert(words.begin(), kSource);
    cases.push_back({std::move(name), std::move(bytes), std::move(words)});
  };
  add("too_short", Bytes{1, 0, 0, 0, 0}, {"file is 5 bytes", "too short", "8-byte header"});
  add("header_longer_than_file", raw_file("{}", 0, 1000),
      {"header length 1000", "exceeds the 2 bytes"});
  add("header_over_limit", raw_file("{}", 0, 200'000'000),
      {"header length 200000000", "limit of 100000000"});
  add("not_json", raw_file("{\"t\": nope}", 0), {"not valid JSON"});
  add("empty_header", raw_file("", 0), {"not valid JSON"});
  add("trailing_garbage", raw_file("{} x", 0), {"not valid JSON"});
  add("not_object", raw_file("[1, 2]", 0), {"header is a JSON array", "expected an object"});
  add("entry_not_object", raw_file(one_entry("3"), 0), {"tensor 't' is 3", "expected an object"});
  add("missing_dtype", raw_file(one_entry(R"({"shape":[1],"data_offsets":[0,1]})"), 1),
      {"tensor 't' has no 'dtype'"});
  add("missing_shape", raw_file(one_entry(R"({"dtype":"U8","data_offsets":[0,1]})"), 1),
      {"tensor 't' has no 'shape'"});
  add("missing_offsets", raw_file(one_entry(R"({"dtype":"U8","shape":[1]})"), 1),
      {"tensor 't' has no 'data_offsets'"});
  add("dtype_not_string", raw_file(one_entry(R"({"dtype":5,"shape":[1],"data_offsets":[0,1]})"), 1),
      {"tensor 't' dtype is 5", "expected a string"});
  add("unknown_dtype",
      raw_file(one_entry(R"({"dtype":"F99","shape":[1],"data_offsets":[0,1]})"), 1),
      {"tensor 't' has unknown dtype \"F99\""});
  add("shape_not_array", raw_file(one_entry(R"({"dtype":"U8","shape":1,"data_offsets":[0,1]})"), 1),
      {"tensor 't' shape is 1", "expected an array"});
  add("negative_extent",
      raw_file(one_entry(R"({"dtype":"U8","shape":[2,-3],"data_offsets":[0,1]})"), 1),
      {"tensor 't' shape[1] = -3", "not an integer in [0, 2^63)"});
  add("float_extent",
      raw_file(one_entry(R"({"dtype":"U8","shape":[2.5],"data_offsets":[0,1]})"), 1),
      {"shape[0] = 2.5"});
  add("numel_overflow",
      raw_file(one_entry(R"({"dtype":"U8","shape":[4294967296,4294967296],)"
                         R"("data_offsets":[0,1]})"),
               1),
      {"tensor 't' shape [4294967296, 4294967296]", "more elements than int64"});
  add("nbytes_overflow",
      raw_file(one_entry(R"({"dtype":"F32","shape":[4611686018427387904],)"
                         R"("data_offsets":[0,1]})"),
               1),
      {"tensor 't' shape [4611686018427387904] of F32", "more bytes than int64"});
  add("offsets_not_pair",
      raw_file(one_entry(R"({"dtype":"U8","shape":[1],"data_offsets":[0]})"), 1),
      {"tensor 't' data_offsets [0]", "not a pair"});
  add("offsets_out_of_order",
      raw_file(one_entry(R"({"dtype":"U8","shape":[8],"data_offsets":[8,0]})"), 8),
      {"tensor 't' data_offsets [8, 0] are out of order"});
  add("offsets_out_of_range",
      raw_file(R"({"k":{"dtype":"F32","shape":[24],"data_offsets":[0,96]}})", 64),
      {"tensor 'k' data_offsets [0, 96] exceed the data section of 64 bytes"});
  add("size_mismatch",
      raw_file(one_entry(R"({"dtype":"F32","shape":[2,3],"data_offsets":[0,20]})"), 20),
      {"tensor 't' data_offsets [0, 20] hold 20 bytes", "shape [2, 3] of F32 needs 24"});
  add("overlap",
      raw_file(R"({"a":{"dtype":"U8","shape":[16],"data_offsets":[0,16]},)"
               R"("b":{"dtype":"U8","shape":[16],"data_offsets":[8,24]}})",
               24),
      {"tensor 'b' data_offsets [8, 24] overlap tensor 'a' [0, 16]"});
  add("gap",
      raw_file(R"({"a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]},)"
               R"("b":{"dtype":"U8","shape":[8],"data_offsets":[16,24]}})",
               24),
      {"unused bytes [8, 16) before tensor 'b'"});
  add("trailing_data",
      raw_file(one_entry(R"({"dtype":"U8","shape":[8],"data_offsets":[0,8]})"), 24),
      {"16 unused bytes after the last tensor"});
  add("duplicate_name",
      raw_file(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
               R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
               2),
      {"duplicate tensor name 'a'"});
  add("duplicate_field",
      raw_file(one_entry(R"({"dtype":"U8","dtype":"I8","shape":[1],"data_offsets":[0,1]})"), 1),
      {"duplicate key 'dtype'"});
  add("metadata_not_object", raw_file(R"({"__metadata__":[1]})", 0),
      {"__metadata__ is [1]", "expected an object of strings"});
  add("metadata_not_string", raw_file(R"({"__metadata__":{"epoch":3}})", 0),
      {"__metadata__ value of 'epoch' is 3", "expected a string"});
  add("too_deep", raw_file(R"({"__metadata__":{"x":[[1]]}})", 0), {"nests deeper than 3"});
  return cases;
}

class SafetensorsBadInput : public ::testing::TestWithParam<BadCase> {};

TEST_P(SafetensorsBadInput, ParseRaisesNamedError) {
  const BadCase& bad = GetParam();
  expect_error([&] { parse(bad.bytes.data(), bad.bytes.size(), kSource); }, bad.words);
}

INSTANTIATE_TEST_SUITE_P(Parse, SafetensorsBadInput, ::testing::ValuesIn(bad_cases()),
                         [](const auto& info) { return info.param.name; });

TEST(SafetensorsErrors, ReadNamesMissingFile) {
  const std::string path = temp_path("does_not_exist.safetensors");
  expect_error([&] { read(path); }, {path, "not a readable regular file"});
}

TEST(SafetensorsErrors, ReadNamesPathInParseErrors) {
  const std::string path = temp_path("short.safetensors");
  std::ofstream(path, std::ios::binary) << "abc";
  expect_error([&] { read(path); }, {path + ": file is 3 bytes", "too short"});
}

TEST(SafetensorsErrors, NullBytes) {
  expect_error([] { parse(nullptr, 4, kSource); }, {kSource, "bytes is nullptr"});
}

TEST(SafetensorsErrors, SerializeRejectsInvalidTensors) {
  auto one = [](Tensor tensor) {
    File file;
    file.tensors.push_back(std::move(tensor));
    return file;
  };
  Tensor unknown = make_tensor("t", "U8", {2}, 12);
  unknown.dtype = "Q4";
  expect_error([&] { serialize(one(unknown)); }, {"tensor 't' has unknown dtype \"Q4\""});

  Tensor short_data = make_tensor("t", "F32", {2, 2}, 13);
  short_data.data.pop_back();
  expect_error([&] { serialize(one(short_data)); },
               {"tensor 't' holds 15 bytes", "shape [2, 2] of F32 needs 16"});

  Tensor negative = make_tensor("t", "F32", {2}, 14);
  negative.shape = {2, -1};
  expect_error([&] { serialize(one(negative)); }, {"tensor 't' shape[1] = -1 is negative"});

  File twice = one(make_tensor("t", "U8", {1}, 15));
  twice.tensors.push_back(twice.tensors[0]);
  expect_error([&] { serialize(twice); }, {"duplicate tensor name 't'"});

  expect_error([&] { serialize(one(make_tensor("__metadata__", "U8", {1}, 16))); },
               {"'__metadata__' is reserved"});
  expect_error([&] { serialize(one(make_tensor("bad\xff", "U8", {1}, 17))); }, {"not valid UTF-8"});

  const std::string path = temp_path("never_written.safetensors");
  expect_error([&] { write(path, one(unknown)); }, {path, "unknown dtype"});
}

// --- Q/K/V files ---------------------------------------------------------------------------------

struct QkvShape {
  std::int64_t tokens, num_qo_heads, num_kv_heads, head_dim;
};

struct QkvBuffers {
  Bytes q;  // [tokens, num_qo_heads, head_dim]
  Bytes k;  // [tokens, num_kv_heads, head_dim]
  Bytes v;  // [tokens, num_kv_heads, head_dim]
};

QkvBuffers make_buffers(const QkvShape& s, DType dtype) {
  const std::size_t elem = element_size(dtype_name(dtype));
  return {random_bytes(s.tokens * s.num_qo_heads * s.head_dim * elem, 21),
          random_bytes(s.tokens * s.num_kv_heads * s.head_dim * elem, 22),
          random_bytes(s.tokens * s.num_kv_heads * s.head_dim * elem, 23)};
}

File qkv_file(const QkvShape& s, DType dtype, const std::vector<std::int32_t>& cu_seqlens = {}) {
  const QkvBuffers b = make_buffers(s, dtype);
  CuSeqlens cu;
  if (!cu_seqlens.empty()) cu = {cu_seqlens.data(), static_cast<std::int64_t>(cu_seqlens.size())};
  return make_qkv(dtype, s.tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim, b.q.data(),
                  b.k.data(), b.v.data(), cu);
}

TEST(SafetensorsQkv, ReadsGeneratedFileWithCuSeqlens) {
  const QkvShape s{7, 4, 2, 8};
  const QkvBuffers b = make_buffers(s, DType::kFloat32);
  const std::vector<std::int32_t> cu_seqlens = {0, 3, 3, 7};
  const std::string path = temp_path("qkv_f32.safetensors");
  write_qkv(path, DType::kFloat32, s.tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim, b.q.data(),
            b.k.data(), b.v.data(), {cu_seqlens.data(), 4});

  const QkvFile qkv = read_qkv(path);
  EXPECT_EQ(qkv.dtype, DType::kFloat32);
  EXPECT_EQ(qkv.tokens(), 7);
  EXPECT_EQ(qkv.num_qo_heads(), 4);
  EXPECT_EQ(qkv.num_kv_heads(), 2);
  EXPECT_EQ(qkv.head_dim(), 8);
  EXPECT_EQ(qkv.q.shape, (std::vector<std::int64_t>{7, 4, 8}));
  EXPECT_EQ(qkv.v.shape, (std::vector<std::int64_t>{7, 2, 8}));
  EXPECT_EQ(qkv.q.data, b.q);
  EXPECT_EQ(qkv.k.data, b.k);
  EXPECT_EQ(qkv.v.data, b.v);
  EXPECT_EQ(qkv.cu_seqlens, cu_seqlens);
}

TEST(SafetensorsQkv, ReadsEachDtypeWithoutCuSeqlens) {
  for (DType dtype : {DType::kFloat32, DType::kBFloat16, DType::kFloat16}) {
    const QkvShape s{5, 3, 1, 16};
    const QkvBuffers b = make_buffers(s, dtype);
    const std::string path = temp_path(std::string("qkv_") + dtype_name(dtype));
    write_qkv(path, dtype, s.tokens, s.num_qo_heads, s.num_kv_heads, s.head_dim, b.q.data(),
              b.k.data(), b.v.data());
    const QkvFile qkv = read_qkv(path);
    EXPECT_EQ(qkv.dtype, dtype);
    EXPECT_EQ(qkv.q.dtype, dtype_name(dtype));
    EXPECT_TRUE(qkv.cu_seqlens.empty());
    EXPECT_EQ(qkv.q.data, b.q);
    EXPECT_EQ(qkv.v.data, b.v);
  }
}

TEST(SafetensorsQkv, IgnoresOtherTensors) {
  File file = qkv_file({2, 2, 2, 8}, DType::kBFloat16);
  file.tensors.push_back(make_tensor("o", "F32", {3}, 24));
  EXPECT_EQ(to_qkv(file, kSource).num_qo_heads(), 2);
}

// Applies edit to a valid file and expects to_qkv to name the problem.
template <typename Edit>
void expect_qkv_error(Edit&& edit, const std::vector<std::string>& words,
                      const std::vector<std::int32_t>& cu_seqlens = {0, 2, 6}) {
  File file = qkv_file({6, 4, 2, 8}, DType::kFloat32, cu_seqlens);
  edit(file);
  std::vector<std::string> all = words;
  all.insert(all.begin(), kSource);
  expect_error([&] { to_qkv(file, kSource); }, all);
}

Tensor& tensor_of(File& file, const std::string& name) {
  for (Tensor& tensor : file.tensors) {
    if (tensor.name == name) return tensor;
  }
  throw std::runtime_error("no tensor " + name);
}

void erase(File& file, const std::string& name) {
  for (auto it = file.tensors.begin(); it != file.tensors.end(); ++it) {
    if (it->name == name) {
      file.tensors.erase(it);
      return;
    }
  }
}

// A same-size stand-in of another shape or dtype, data regenerated to match.
void reshape(File& file, const std::string& name, const std::string& dtype,
             std::vector<std::int64_t> shape) {
  tensor_of(file, name) = make_tensor(name, dtype, std::move(shape), 25);
}

void set_cu_seqlens(File& file, const std::vector<std::int32_t>& values) {
  Tensor& cu = tensor_of(file, "cu_seqlens");
  cu.shape = {static_cast<std::int64_t>(values.size())};
  cu.data.resize(values.size() * sizeof(std::int32_t));
  std::memcpy(cu.data.data(), values.data(), cu.data.size());
}

TEST(SafetensorsQkvErrors, MissingTensor) {
  expect_qkv_error([](File& f) { erase(f, "v"); }, {"tensor 'v' is missing", "q, k and v"});
}

TEST(SafetensorsQkvErrors, WrongRank) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "k", "F32", {6, 16});
      },
      {"tensor 'k' has rank 2", "[6, 16]", "expected 3"});
}

TEST(SafetensorsQkvErrors, UnsupportedDtype) {
  expect_qkv_error(
      [](File& f) {
        for (const char* name : {"q", "k", "v"}) {
          const auto shape = tensor_of(f, name).shape;
          reshape(f, name, "I32", shape);
        }
      },
      {"tensor 'q' has dtype I32", "expected F32, BF16 or F16"});
}

TEST(SafetensorsQkvErrors, MixedDtypes) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "v", "BF16", {6, 2, 8});
      },
      {"tensor 'v' has dtype BF16", "q has F32", "share one dtype"});
}

TEST(SafetensorsQkvErrors, TokensDisagree) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "k", "F32", {5, 2, 8});
      },
      {"tensor 'k' has 5 tokens", "q has 6"});
}

TEST(SafetensorsQkvErrors, HeadDimDisagrees) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "v", "F32", {6, 2, 4});
      },
      {"tensor 'v' has head_dim 4", "q has 8"});
}

TEST(SafetensorsQkvErrors, KvHeadsDisagree) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "v", "F32", {6, 1, 8});
      },
      {"tensor 'v' shape [6, 1, 8] differs from tensor 'k' shape [6, 2, 8]"});
}

TEST(SafetensorsQkvErrors, HeadsNotDivisible) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "q", "F32", {6, 3, 8});
      },
      {"num_qo_heads = 3", "not a multiple of num_kv_heads = 2"});
}

TEST(SafetensorsQkvErrors, ZeroKvHeads) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "k", "F32", {6, 0, 8});
        reshape(f, "v", "F32", {6, 0, 8});
      },
      {"tensor 'k' has 0 heads"});
}

TEST(SafetensorsQkvErrors, ZeroTokens) {
  expect_qkv_error(
      [](File& f) {
        for (const char* name : {"q", "k", "v"}) {
          auto shape = tensor_of(f, name).shape;
          shape[0] = 0;
          reshape(f, name, "F32", shape);
        }
      },
      {"tensor 'q' has 0 tokens"}, {});
}

TEST(SafetensorsQkvErrors, DataSizeLies) {
  expect_qkv_error([](File& f) { tensor_of(f, "q").data.resize(8); },
                   {"tensor 'q' holds 8 bytes", "needs 768"});
}

TEST(SafetensorsQkvErrors, CuSeqlensWrongDtype) {
  expect_qkv_error([](File& f) { reshape(f, "cu_seqlens", "I64", {3}); },
                   {"tensor 'cu_seqlens' has dtype I64", "expected I32"});
}

TEST(SafetensorsQkvErrors, CuSeqlensWrongRank) {
  expect_qkv_error(
      [](File& f) {
        reshape(f, "cu_seqlens", "I32", {1, 3});
      },
      {"tensor 'cu_seqlens' has rank 2", "expected 1"});
}

TEST(SafetensorsQkvErrors, CuSeqlensTooShort) {
  expect_qkv_error([](File& f) { set_cu_seqlens(f, {0}); },
                   {"tensor 'cu_seqlens' has 1 entries", "batch + 1 >= 2"});
}

TEST(SafetensorsQkvErrors, CuSeqlensNotFromZero) {
  expect_qkv_error([](File& f) { set_cu_seqlens(f, {1, 6}); }, {"cu_seqlens[0] = 1, expected 0"});
}

TEST(SafetensorsQkvErrors, CuSeqlensDecreasing) {
  expect_qkv_error(
      [](File& f) {
        set_cu_seqlens(f, {0, 4, 2, 6});
      },
      {"not monotone", "cu_seqlens[2] = 2 < cu_seqlens[1] = 4"});
}

TEST(SafetensorsQkvErrors, CuSeqlensWrongEnd) {
  expect_qkv_error(
      [](File& f) {
        set_cu_seqlens(f, {0, 2, 5});
      },
      {"cu_seqlens ends at 5", "q has 6 tokens"});
}

TEST(SafetensorsQkvErrors, MakeQkvChecksArguments) {
  const Bytes q(4 * 3 * 8 * 4);
  const Bytes kv(4 * 2 * 8 * 4);
  expect_error([&] { make_qkv(DType::kFloat32, 4, 3, 2, 8, q.data(), kv.data(), kv.data()); },
               {"make_qkv: ", "num_qo_heads = 3", "not a multiple of num_kv_heads = 2"});
  expect_error([&] { make_qkv(DType::kFloat32, 4, 2, 2, 8, nullptr, kv.data(), kv.data()); },
               {"make_qkv: ", "q is nullptr"});
  expect_error([&] { make_qkv(DType::kFloat32, -4, 2, 2, 8, q.data(), kv.data(), kv.data()); },
               {"tensor 'q' shape[0] = -4 is negative"});
  expect_error(
      [&] {
        make_qkv(DType::kFloat32, 4, 2, 2, 8, q.data(), kv.data(), kv.data(), {nullptr, 3});
      },
      {"cu_seqlens.data is nullptr"});
  const std::string path = temp_path("qkv_never_written.safetensors");
  const std::int32_t bad_cu[] = {0, 5};
  expect_error(
      [&] {
        write_qkv(path, DType::kFloat32, 4, 2, 2, 8, q.data(), kv.data(), kv.data(), {bad_cu, 2});
      },
      {path, "cu_seqlens ends at 5"});
}

// --- fuzz seeds ----------------------------------------------------------------------------------

TEST(SafetensorsCorpus, WritesFuzzSeeds) {
  const char* dir = std::getenv("PROXYATTN_FUZZ_CORPUS_DIR");
  if (dir == nullptr) GTEST_SKIP() << "set PROXYATTN_FUZZ_CORPUS_DIR to write the seeds";
  auto save = [&](const std::string& name, const Bytes& bytes) {
    std::ofstream out(std::string(dir) + "/" + name, std::ios::binary);
    out.write(reinterpret_cast<const char*>(bytes.data()),
              static_cast<std::streamsize>(bytes.size()));
    ASSERT_TRUE(out.good()) << name;
  };
  save("valid_empty", serialize(File{}));
  File mixed;
  mixed.metadata["format"] = "pt";
  mixed.tensors.push_back(make_tensor("a", "F16", {2, 3}, 31));
  mixed.tensors.push_back(make_tensor("b", "I64", {2}, 32));
  mixed.tensors.push_back(make_tensor("c", "BOOL", {}, 33));
  mixed.tensors.push_back(make_tensor("d", "BF16", {0, 5}, 34));
  save("valid_mixed", serialize(mixed));
  save("valid_qkv", serialize(qkv_file({3, 2, 1, 2}, DType::kBFloat16, {0, 1, 3})));
  save("valid_qkv_f32", serialize(qkv_file({2, 2, 2, 2}, DType::kFloat32)));
  for (const BadCase& bad : bad_cases()) {
    if (bad.bytes.size() <= 256) save("invalid_" + bad.name, bad.bytes);
  }
}

}  // namespace
}  // namespace proxyattn::safetensors
