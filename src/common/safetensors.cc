// src/common/safetensors.cc: the safetensors reader and writer and the Q/K/V contract (docs/SPEC.md
// section 5). Parsing reads the untrusted bytes only through bounds-checked offsets, checks every
// number with overflow-checked arithmetic, and copies tensor data out with memcpy.
#include "proxyattn/safetensors.h"

#include "common/check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <set>
#include <sstream>
#include <system_error>
#include <utility>

namespace proxyattn::safetensors {
namespace {

// Parsing uses a map-backed JSON (logarithmic key lookup; ordered_json's linear lookup made a
// header of many tensors quadratic) and records the header's key order itself, so tensors come
// back in the order they were written. Writing keeps insertion order with ordered_json.
using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;
using detail::printable;

constexpr std::size_t kHeaderSizeBytes = 8;  // the u64 header length at the start of the file
constexpr int kMaxHeaderDepth = 3;           // top object -> tensor entry -> shape / data_offsets
constexpr std::size_t kMaxQuoted = 48;       // longest JSON value quoted in an error message
constexpr char kMetadataKey[] = "__metadata__";

struct DTypeInfo {
  const char* name;
  std::size_t size;
};

// Every byte-sized dtype of the format. Sub-byte types (F4, F6_*) pack several elements per byte
// and are not supported.
constexpr DTypeInfo kDTypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"F8_E8M0", 1},
    {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},     {"U32", 4},
    {"F32", 4},  {"I64", 8}, {"U64", 8}, {"F64", 8},
};

// "file.safetensors: " or "" when the caller has no name to give.
std::string prefix_of(const std::string& source_name) {
  return source_name.empty() ? std::string() : printable(source_name, 256) + ": ";
}

std::string shape_string(const std::vector<std::int64_t>& shape) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << "]";
  return os.str();
}

// A JSON value as text, cut short so that a huge string in a hostile header stays out of messages.
std::string quote(const Json& value) {
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > kMaxQuoted) text = text.substr(0, kMaxQuoted) + "...";
  return text;
}

// A JSON integer in [0, INT64_MAX], or false. Floats such as 2.0 are not integers.
bool to_nonnegative_int64(const Json& value, std::int64_t* out) {
  if (value.is_number_unsigned()) {
    const auto u = value.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
    *out = static_cast<std::int64_t>(u);
    return true;
  }
  if (value.is_number_integer()) {
    const auto s = value.get<std::int64_t>();
    if (s < 0) return false;
    *out = s;
    return true;
  }
  return false;
}

// numel of shape with every extent checked; `what` names the tensor in messages.
std::int64_t checked_numel(const std::vector<std::int64_t>& shape, const std::string& prefix,
                           const std::string& what) {
  std::int64_t numel = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    PROXYATTN_CHECK(shape[i] >= 0, prefix, what, " shape[", i, "] = ", shape[i], " is negative");
    PROXYATTN_CHECK(!__builtin_mul_overflow(numel, shape[i], &numel), prefix, what, " shape ",
                    shape_string(shape), " has more elements than int64 can count");
  }
  return numel;
}

// numel * element size, checked; dtype must be known.
std::int64_t checked_nbytes(const std::vector<std::int64_t>& shape, const std::string& dtype,
                            const std::string& prefix, const std::string& what) {
  const std::size_t elem_size = element_size(dtype);
  PROXYATTN_CHECK(elem_size != 0, prefix, what, " has unknown dtype ", quote(Json(dtype)));
  std::int64_t nbytes = 0;
  PROXYATTN_CHECK(!__builtin_mul_overflow(checked_numel(shape, prefix, what),
                                          static_cast<std::int64_t>(elem_size), &nbytes),
                  prefix, what, " shape ", shape_string(shape), " of ", dtype,
                  " has more bytes than int64 can count");
  return nbytes;
}

// Checks an in-memory tensor: known dtype, valid shape, and data of exactly the right size.
void check_tensor(const Tensor& tensor, const std::string& prefix) {
  const std::string what = "tensor '" + printable(tensor.name) + "'";
  const std::int64_t nbytes = checked_nbytes(tensor.shape, tensor.dtype, prefix, what);
  PROXYATTN_CHECK(static_cast<std::uint64_t>(nbytes) == tensor.data.size(), prefix, what, " holds ",
                  tensor.data.size(), " bytes, but shape ", shape_string(tensor.shape), " of ",
                  tensor.dtype, " needs ", nbytes);
}

// Checks the header's structure in one SAX pass: nesting no deeper than a safetensors header
// has, no duplicate keys (which the JSON library would silently merge), and the top-level keys
// in order. Every step is O(log keys), so a header of many tensors parses in linear-log time (the
// library's callback parser rescans the parent object at each object end: quadratic).
class HeaderChecker : public nlohmann::json_sax<Json> {
 public:
  HeaderChecker(const std::string& prefix, std::vector<std::string>* top_keys)
      : prefix_(prefix), top_keys_(top_keys) {}
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    open();
    keys_.emplace_back();
    return true;
  }
  bool key(string_t& key) override {
    if (!keys_.back().insert(key).second) {
      if (keys_.size() == 1) {
        PROXYATTN_FAIL(prefix_, "duplicate tensor name '", printable(key), "' in the header");
      }
      PROXYATTN_FAIL(prefix_, "duplicate key '", printable(key), "' in one object of the header");
    }
    if (keys_.size() == 1 && depth_ == 1) top_keys_->push_back(key);
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override {
    open();
    return true;
  }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = e.what();
    return false;
  }
  const std::string& error() const { return error_; }

 private:
  void open() {
    PROXYATTN_CHECK(depth_ < kMaxHeaderDepth, prefix_, "header nests deeper than ",
                    kMaxHeaderDepth, " levels");
    ++depth_;
  }
  const std::string& prefix_;
  std::vector<std::string>* top_keys_;
  std::vector<std::set<std::string>> keys_;  // keys seen in each open object
  int depth_ = 0;
  std::string error_;
};

// Parses the header text; top_keys receives the top-level keys in header order.
Json parse_header_json(const char* begin, std::size_t size, const std::string& prefix,
                       std::vector<std::string>* top_keys) {
  // nlohmann's lexer takes a NUL byte for the end of input, which would accept junk after it.
  if (const void* nul = std::memchr(begin, '\0', size)) {
    PROXYATTN_FAIL(prefix, "header holds a NUL byte at offset ",
                   static_cast<const char*>(nul) - begin, " of ", size,
                   "; expected JSON padded with spaces");
  }
  HeaderChecker checker(prefix, top_keys);
  if (!Json::sax_parse(begin, begin + size, &checker)) {
    PROXYATTN_FAIL(prefix, "header is not valid JSON (", printable(checker.error(), 200), ")");
  }
  try {
    return Json::parse(begin, begin + size);
  } catch (const Json::exception& e) {
    PROXYATTN_FAIL(prefix, "header is not valid JSON (", printable(e.what(), 200), ")");
  }
}

// One tensor entry of the header, validated except for its place among the others.
struct Entry {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;  // data_offsets, relative to the data section
  std::uint64_t end = 0;
};

Entry parse_entry(const std::string& name, const Json& value, std::uint64_t data_size,
                  const std::string& prefix) {
  const std::string what = "tensor '" + printable(name) + "'";
  PROXYATTN_CHECK(value.is_object(), prefix, what, " is ", quote(value),
                  ", expected an object with dtype, shape and data_offsets");
  auto field = [&](const char* key) -> const Json& {
    const auto it = value.find(key);
    PROXYATTN_CHECK(it != value.end(), prefix, what, " has no '", key, "'");
    return *it;
  };
  Entry entry;
  entry.name = name;

  const Json& dtype = field("dtype");
  PROXYATTN_CHECK(dtype.is_string(), prefix, what, " dtype is ", quote(dtype),
                  ", expected a string");
  entry.dtype = dtype.get<std::string>();
  PROXYATTN_CHECK(element_size(entry.dtype) != 0, prefix, what, " has unknown dtype ",
                  quote(dtype));

  const Json& shape = field("shape");
  PROXYATTN_CHECK(shape.is_array(), prefix, what, " shape is ", quote(shape),
                  ", expected an array of integers");
  for (std::size_t i = 0; i < shape.size(); ++i) {
    std::int64_t extent = 0;
    PROXYATTN_CHECK(to_nonnegative_int64(shape[i], &extent), prefix, what, " shape[", i,
                    "] = ", quote(shape[i]), " is not an integer in [0, 2^63)");
    entry.shape.push_back(extent);
  }

  const Json& offsets = field("data_offsets");
  std::int64_t begin = 0;
  std::int64_t end = 0;
  PROXYATTN_CHECK(
      offsets.is_array() && offsets.size() == 2 && to_nonnegative_int64(offsets[0], &begin) &&
          to_nonnegative_int64(offsets[1], &end),
      prefix, what, " data_offsets ", quote(offsets), " is not a pair of integers in [0, 2^63)");
  entry.begin = static_cast<std::uint64_t>(begin);
  entry.end = static_cast<std::uint64_t>(end);
  PROXYATTN_CHECK(entry.begin <= entry.end, prefix, what, " data_offsets [", begin, ", ", end,
                  "] are out of order (begin > end)");
  PROXYATTN_CHECK(entry.end <= data_size, prefix, what, " data_offsets [", begin, ", ", end,
                  "] exceed the data section of ", data_size, " bytes");

  const std::int64_t nbytes = checked_nbytes(entry.shape, entry.dtype, prefix, what);
  PROXYATTN_CHECK(static_cast<std::uint64_t>(nbytes) == entry.end - entry.begin, prefix, what,
                  " data_offsets [", begin, ", ", end, "] hold ", entry.end - entry.begin,
                  " bytes, but shape ", shape_string(entry.shape), " of ", entry.dtype, " needs ",
                  nbytes);
  return entry;
}

// The tensors must tile the data section exactly, as the reference implementation requires.
void check_layout(const std::vector<Entry>& entries, std::uint64_t data_size,
                  const std::string& prefix) {
  std::vector<std::size_t> order(entries.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return std::make_pair(entries[a].begin, entries[a].end) <
           std::make_pair(entries[b].begin, entries[b].end);
  });
  std::uint64_t covered = 0;        // end of the bytes claimed so far
  const Entry* previous = nullptr;  // the tensor that claimed them last
  for (std::size_t i : order) {
    const Entry& entry = entries[i];
    if (entry.begin < covered) {
      PROXYATTN_FAIL(prefix, "tensor '", printable(entry.name), "' data_offsets [", entry.begin,
                     ", ", entry.end, "] overlap tensor '", printable(previous->name), "' [",
                     previous->begin, ", ",
                     previous->end, "]");
    }
    PROXYATTN_CHECK(entry.begin == covered, prefix, "the data section has unused bytes [", covered,
                    ", ", entry.begin, ") before tensor '", printable(entry.name), "'");
    previous = &entry;
    covered = entry.end;
  }
  PROXYATTN_CHECK(covered == data_size, prefix, "the data section has ", data_size - covered,
                  " unused bytes after the last tensor (", data_size, " bytes, tensors end at ",
                  covered, ")");
}

DType to_library_dtype(const Tensor& tensor, const std::string& prefix) {
  if (tensor.dtype == "F32") return DType::kFloat32;
  if (tensor.dtype == "BF16") return DType::kBFloat16;
  if (tensor.dtype == "F16") return DType::kFloat16;
  PROXYATTN_FAIL(prefix, "tensor '", printable(tensor.name), "' has dtype ", printable(tensor.dtype),
                 ", expected F32, BF16 or F16");
}

const Tensor& require(const File& file, const char* name, const std::string& prefix) {
  const Tensor* tensor = file.find(name);
  PROXYATTN_CHECK(tensor != nullptr, prefix, "tensor '", name,
                  "' is missing; a Q/K/V file needs tensors q, k and v");
  return *tensor;
}

// Checks the Q/K/V contract without copying anything; returns the dtype.
DType check_qkv(const File& file, const std::string& prefix) {
  const Tensor& q = require(file, "q", prefix);
  const Tensor& k = require(file, "k", prefix);
  const Tensor& v = require(file, "v", prefix);
  for (const Tensor* t : {&q, &k, &v}) {
    PROXYATTN_CHECK(t->shape.size() == 3, prefix, "tensor '", t->name, "' has rank ",
                    t->shape.size(), " (shape ", shape_string(t->shape),
                    "), expected 3: [tokens, heads, head_dim]");
    check_tensor(*t, prefix);
  }
  const DType dtype = to_library_dtype(q, prefix);
  for (const Tensor* t : {&k, &v}) {
    PROXYATTN_CHECK(t->dtype == q.dtype, prefix, "tensor '", t->name, "' has dtype ", t->dtype,
                    ", but q has ", q.dtype, "; q, k and v must share one dtype");
    PROXYATTN_CHECK(t->shape[0] == q.shape[0], prefix, "tensor '", t->name, "' has ", t->shape[0],
                    " tokens, but q has ", q.shape[0]);
    PROXYATTN_CHECK(t->shape[2] == q.shape[2], prefix, "tensor '", t->name, "' has head_dim ",
                    t->shape[2], ", but q has ", q.shape[2]);
  }
  PROXYATTN_CHECK(v.shape == k.shape, prefix, "tensor 'v' shape ", shape_string(v.shape),
                  " differs from tensor 'k' shape ", shape_string(k.shape));
  const std::int64_t tokens = q.shape[0];
  const std::int64_t num_qo_heads = q.shape[1];
  const std::int64_t num_kv_heads = k.shape[1];
  const std::int64_t head_dim = q.shape[2];
  PROXYATTN_CHECK(tokens >= 1, prefix, "tensor 'q' has 0 tokens, expected at least 1");
  PROXYATTN_CHECK(head_dim >= 1, prefix, "tensor 'q' has head_dim 0, expected at least 1");
  PROXYATTN_CHECK(num_qo_heads >= 1, prefix, "tensor 'q' has 0 heads, expected at least 1");
  PROXYATTN_CHECK(num_kv_heads >= 1, prefix, "tensor 'k' has 0 heads, expected at least 1");
  PROXYATTN_CHECK(num_qo_heads % num_kv_heads == 0, prefix, "num_qo_heads = ", num_qo_heads,
                  " (q) is not a multiple of num_kv_heads = ", num_kv_heads, " (k, v)");

  const Tensor* cu = file.find("cu_seqlens");
  if (cu == nullptr) return dtype;
  PROXYATTN_CHECK(cu->dtype == "I32", prefix, "tensor 'cu_seqlens' has dtype ", cu->dtype,
                  ", expected I32");
  PROXYATTN_CHECK(cu->shape.size() == 1, prefix, "tensor 'cu_seqlens' has rank ", cu->shape.size(),
                  ", expected 1: [batch + 1]");
  check_tensor(*cu, prefix);
  PROXYATTN_CHECK(cu->shape[0] >= 2, prefix, "tensor 'cu_seqlens' has ", cu->shape[0],
                  " entries, expected batch + 1 >= 2");
  std::int32_t previous = 0;
  for (std::int64_t i = 0; i < cu->shape[0]; ++i) {
    std::int32_t value = 0;
    std::memcpy(&value, cu->data.data() + i * sizeof(value), sizeof(value));
    if (i == 0) {
      PROXYATTN_CHECK(value == 0, prefix, "cu_seqlens[0] = ", value, ", expected 0");
    }
    PROXYATTN_CHECK(value >= previous, prefix, "cu_seqlens is not monotone: cu_seqlens[", i,
                    "] = ", value, " < cu_seqlens[", i - 1, "] = ", previous);
    previous = value;
  }
  PROXYATTN_CHECK(previous == tokens, prefix, "cu_seqlens ends at ", previous, ", but q has ",
                  tokens, " tokens");
  return dtype;
}

std::vector<std::uint8_t> serialize_named(const File& file, const std::string& prefix) {
  std::set<std::string> names;
  for (const Tensor& tensor : file.tensors) {
    PROXYATTN_CHECK(tensor.name != kMetadataKey, prefix, "tensor name '", kMetadataKey,
                    "' is reserved for metadata");
    PROXYATTN_CHECK(names.insert(tensor.name).second, prefix, "duplicate tensor name '",
                    printable(tensor.name), "'");
    check_tensor(tensor, prefix);
  }

  // Data section: wider elements first (stable), so each tensor starts aligned to its element.
  std::vector<std::size_t> order(file.tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return element_size(file.tensors[a].dtype) > element_size(file.tensors[b].dtype);
  });
  std::vector<std::uint64_t> begins(file.tensors.size());  // [num_tensors] data_offsets[0]
  std::uint64_t data_size = 0;
  for (std::size_t i : order) {
    begins[i] = data_size;
    data_size += file.tensors[i].data.size();
  }

  OrderedJson header = OrderedJson::object();
  if (!file.metadata.empty()) {
    OrderedJson metadata = OrderedJson::object();
    for (const auto& [key, value] : file.metadata) metadata[key] = value;
    header[kMetadataKey] = std::move(metadata);
  }
  for (std::size_t i = 0; i < file.tensors.size(); ++i) {
    const Tensor& tensor = file.tensors[i];
    OrderedJson entry = OrderedJson::object();
    entry["dtype"] = tensor.dtype;
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {begins[i], begins[i] + tensor.data.size()};
    header[tensor.name] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const OrderedJson::exception& e) {
    PROXYATTN_FAIL(prefix, "a tensor name or metadata string is not valid UTF-8 (",
                   printable(e.what(), 200), ")");
  }
  // Pad with spaces so the data section starts at a multiple of 8 bytes, as the reference does.
  text.append((kHeaderSizeBytes - text.size() % kHeaderSizeBytes) % kHeaderSizeBytes, ' ');
  PROXYATTN_CHECK(text.size() <= kMaxHeaderSize, prefix, "header of ", text.size(),
                  " bytes exceeds the limit of ", kMaxHeaderSize, " bytes");

  std::vector<std::uint8_t> bytes(kHeaderSizeBytes + text.size() + data_size);
  const std::uint64_t header_size = text.size();
  for (std::size_t i = 0; i < kHeaderSizeBytes; ++i) {
    bytes[i] = static_cast<std::uint8_t>(header_size >> (8 * i));
  }
  std::memcpy(bytes.data() + kHeaderSizeBytes, text.data(), text.size());
  std::uint8_t* data = bytes.data() + kHeaderSizeBytes + text.size();
  for (std::size_t i = 0; i < file.tensors.size(); ++i) {
    const auto& src = file.tensors[i].data;
    if (!src.empty()) std::memcpy(data + begins[i], src.data(), src.size());
  }
  return bytes;
}

// Writes to a temporary file in the destination's folder and renames it over path only after a
// successful write and close: a failed write leaves no file and never a truncated one.
void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  const std::string shown = printable(path, 256);
  // Only regular files are replaced: renaming over a device or a link would destroy it.
  std::error_code ec;
  const auto status = std::filesystem::symlink_status(path, ec);
  PROXYATTN_CHECK(!std::filesystem::exists(status) || std::filesystem::is_regular_file(status),
                  shown, ": exists and is not a regular file; expected a file path to write");
  std::string tmp = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmp.data());
  PROXYATTN_CHECK(fd >= 0, shown, ": cannot create a temporary file next to it (",
                  std::strerror(errno), ")");
  std::size_t done = 0;
  int error = 0;
  if (::fchmod(fd, 0644) != 0) error = errno;  // mkstemp creates 0600; a written file is 0644
  while (error == 0 && done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      error = n < 0 ? errno : EIO;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  if (error == 0 && ::fsync(fd) != 0 && errno != EINVAL) error = errno;
  if (::close(fd) != 0 && error == 0) error = errno;
  if (error == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(tmp.c_str());
    PROXYATTN_FAIL(shown, ": writing ", bytes.size(), " bytes failed (", std::strerror(error),
                   ")");
  }
}

File make_qkv_named(DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
                    std::int64_t num_kv_heads, std::int64_t head_dim, const void* q, const void* k,
                    const void* v, CuSeqlens cu_seqlens, const std::string& prefix) {
  File file;
  const char* name = dtype_name(dtype);
  auto add = [&](const char* tensor_name, const std::string& tensor_dtype,
                 std::vector<std::int64_t> shape, const void* src) {
    Tensor tensor;
    tensor.name = tensor_name;
    tensor.dtype = tensor_dtype;
    tensor.shape = std::move(shape);
    const std::int64_t nbytes = checked_nbytes(tensor.shape, tensor.dtype, prefix,
                                               std::string("tensor '") + tensor_name + "'");
    PROXYATTN_CHECK(src != nullptr || nbytes == 0, prefix, tensor_name, " is nullptr, expected ",
                    nbytes, " bytes");
    tensor.data.resize(static_cast<std::size_t>(nbytes));
    if (nbytes > 0) std::memcpy(tensor.data.data(), src, tensor.data.size());
    file.tensors.push_back(std::move(tensor));
  };
  add("q", name, {tokens, num_qo_heads, head_dim}, q);
  add("k", name, {tokens, num_kv_heads, head_dim}, k);
  add("v", name, {tokens, num_kv_heads, head_dim}, v);
  PROXYATTN_CHECK(cu_seqlens.data != nullptr || cu_seqlens.size == 0, prefix,
                  "cu_seqlens.data is nullptr, but cu_seqlens.size = ", cu_seqlens.size);
  if (cu_seqlens.data != nullptr) add("cu_seqlens", "I32", {cu_seqlens.size}, cu_seqlens.data);
  check_qkv(file, prefix);
  return file;
}

}  // namespace

std::int64_t Tensor::numel() const { return checked_numel(shape, "", "tensor '" + name + "'"); }

const Tensor* File::find(const std::string& name) const {
  for (const Tensor& tensor : tensors) {
    if (tensor.name == name) return &tensor;
  }
  return nullptr;
}

std::size_t element_size(const std::string& dtype) {
  for (const DTypeInfo& info : kDTypes) {
    if (dtype == info.name) return info.size;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::kFloat32:
      return "F32";
    case DType::kBFloat16:
      return "BF16";
    case DType::kFloat16:
      return "F16";
  }
  PROXYATTN_FAIL("dtype = ", static_cast<int>(dtype), ", expected kFloat32, kBFloat16 or kFloat16");
}

File parse(const std::uint8_t* bytes, std::size_t size, const std::string& source_name) {
  const std::string prefix = prefix_of(source_name);
  PROXYATTN_CHECK(bytes != nullptr || size == 0, prefix, "bytes is nullptr, but size = ", size);
  PROXYATTN_CHECK(size >= kHeaderSizeBytes, prefix, "file is ", size,
                  " bytes, too short for the 8-byte header length");
  std::uint64_t header_size = 0;  // little-endian, read byte by byte
  for (std::size_t i = 0; i < kHeaderSizeBytes; ++i) {
    header_size |= static_cast<std::uint64_t>(bytes[i]) << (8 * i);
  }
  PROXYATTN_CHECK(header_size <= kMaxHeaderSize, prefix, "header length ", header_size,
                  " exceeds the limit of ", kMaxHeaderSize, " bytes");
  PROXYATTN_CHECK(header_size <= size - kHeaderSizeBytes, prefix, "header length ", header_size,
                  " exceeds the ", size - kHeaderSizeBytes, " bytes after the length field");

  const char* header_text = reinterpret_cast<const char*>(bytes + kHeaderSizeBytes);
  std::vector<std::string> keys;  // the header's top-level keys, in order
  const Json header = parse_header_json(header_text, header_size, prefix, &keys);
  PROXYATTN_CHECK(header.is_object(), prefix, "header is a JSON ", header.type_name(),
                  ", expected an object");

  const std::uint8_t* data = bytes + kHeaderSizeBytes + header_size;  // [data_size] bytes
  const std::uint64_t data_size = size - kHeaderSizeBytes - header_size;
  File file;
  std::vector<Entry> entries;
  entries.reserve(keys.size());
  for (const std::string& key : keys) {
    const auto it = header.find(key);
    if (key == kMetadataKey) {
      PROXYATTN_CHECK(it->is_object(), prefix, kMetadataKey, " is ", quote(*it),
                      ", expected an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        PROXYATTN_CHECK(m->is_string(), prefix, kMetadataKey, " value of '", printable(m.key()),
                        "' is ", quote(*m), ", expected a string");
        file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(key, *it, data_size, prefix));
  }
  check_layout(entries, data_size, prefix);

  file.tensors.reserve(entries.size());
  for (Entry& entry : entries) {
    Tensor tensor;
    tensor.name = std::move(entry.name);
    tensor.dtype = std::move(entry.dtype);
    tensor.shape = std::move(entry.shape);
    tensor.data.assign(data + entry.begin, data + entry.end);
    file.tensors.push_back(std::move(tensor));
  }
  return file;
}

File read(const std::string& path) {
  std::error_code error;
  const std::string shown = printable(path, 256);
  PROXYATTN_CHECK(std::filesystem::is_regular_file(path, error), shown,
                  ": not a readable regular file",
                  error ? " (" + error.message() + ")" : std::string());
  const std::uintmax_t size = std::filesystem::file_size(path, error);
  PROXYATTN_CHECK(!error, shown, ": cannot get the file size (", error.message(), ")");
  std::ifstream in(path, std::ios::binary);
  PROXYATTN_CHECK(in.is_open(), shown, ": cannot open for reading (", std::strerror(errno), ")");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  PROXYATTN_CHECK(static_cast<std::uintmax_t>(in.gcount()) == size, shown, ": read ", in.gcount(),
                  " of ", size, " bytes");
  return parse(bytes.data(), bytes.size(), path);
}

std::vector<std::uint8_t> serialize(const File& file) {
  return serialize_named(file, "serialize: ");
}

void write(const std::string& path, const File& file) {
  write_bytes(path, serialize_named(file, prefix_of(path)));
}

QkvFile to_qkv(const File& file, const std::string& source_name) {
  QkvFile qkv;
  qkv.dtype = check_qkv(file, prefix_of(source_name));
  qkv.q = *file.find("q");
  qkv.k = *file.find("k");
  qkv.v = *file.find("v");
  if (const Tensor* cu = file.find("cu_seqlens")) {
    qkv.cu_seqlens.resize(static_cast<std::size_t>(cu->shape[0]));
    std::memcpy(qkv.cu_seqlens.data(), cu->data.data(), cu->data.size());
  }
  return qkv;
}

QkvFile read_qkv(const std::string& path) { return to_qkv(read(path), path); }

File make_qkv(DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
              std::int64_t num_kv_heads, std::int64_t head_dim, const void* q, const void* k,
              const void* v, CuSeqlens cu_seqlens) {
  return make_qkv_named(dtype, tokens, num_qo_heads, num_kv_heads, head_dim, q, k, v, cu_seqlens,
                        "make_qkv: ");
}

void write_qkv(const std::string& path, DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
               std::int64_t num_kv_heads, std::int64_t head_dim, const void* q, const void* k,
               const void* v, CuSeqlens cu_seqlens) {
  const std::string prefix = prefix_of(path);
  const File file = make_qkv_named(dtype, tokens, num_qo_heads, num_kv_heads, head_dim, q, k, v,
                                   cu_seqlens, prefix);
  write_bytes(path, serialize_named(file, prefix));
}

}  // namespace proxyattn::safetensors
