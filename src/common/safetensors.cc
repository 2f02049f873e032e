// src/common/safetensors.cc: the safetensors reader and writer and the Q/K/V contract (docs/SPEC.md
// section 5). Parsing reads the untrusted bytes only through bounds-checked offsets, checks every
// number with overflow-checked arithmetic, and copies tensor data out with memcpy.
#include "proxyattn/safetensors.h"

#include "common/check.h"

#include <algorithm>
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

// ordered_json keeps the header's key order, so tensors come back in the order they were written.
using Json = nlohmann::ordered_json;

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
  return source_name.empty() ? std::string() : source_name + ": ";
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
  const std::string what = "tensor '" + tensor.name + "'";
  const std::int64_t nbytes = checked_nbytes(tensor.shape, tensor.dtype, prefix, what);
  PROXYATTN_CHECK(static_cast<std::uint64_t>(nbytes) == tensor.data.size(), prefix, what, " holds ",
                  tensor.data.size(), " bytes, but shape ", shape_string(tensor.shape), " of ",
                  tensor.dtype, " needs ", nbytes);
}

// Parses the header text. The callback rejects duplicate keys (which the JSON library would
// silently merge) and nesting deeper than a safetensors header has.
Json parse_header_json(const char* begin, std::size_t size, const std::string& prefix) {
  std::vector<std::set<std::string>> keys_stack;  // keys seen in each open object
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
    switch (event) {
      case Json::parse_event_t::object_start:
      case Json::parse_event_t::array_start:
        PROXYATTN_CHECK(depth < kMaxHeaderDepth, prefix, "header nests deeper than ",
                        kMaxHeaderDepth, " levels");
        if (event == Json::parse_event_t::object_start) keys_stack.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        keys_stack.pop_back();
        break;
      case Json::parse_event_t::key: {
        const auto& key = parsed.get_ref<const std::string&>();
        if (!keys_stack.back().insert(key).second) {
          if (depth == 1) PROXYATTN_FAIL(prefix, "duplicate tensor name '", key, "' in the header");
          PROXYATTN_FAIL(prefix, "duplicate key '", key, "' in one object of the header");
        }
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(begin, begin + size, callback);
  } catch (const Json::exception& e) {
    PROXYATTN_FAIL(prefix, "header is not valid JSON (", e.what(), ")");
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
  const std::string what = "tensor '" + name + "'";
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
      PROXYATTN_FAIL(prefix, "tensor '", entry.name, "' data_offsets [", entry.begin, ", ",
                     entry.end, "] overlap tensor '", previous->name, "' [", previous->begin, ", ",
                     previous->end, "]");
    }
    PROXYATTN_CHECK(entry.begin == covered, prefix, "the data section has unused bytes [", covered,
                    ", ", entry.begin, ") before tensor '", entry.name, "'");
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
  PROXYATTN_FAIL(prefix, "tensor '", tensor.name, "' has dtype ", tensor.dtype,
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
                    tensor.name, "'");
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

  Json header = Json::object();
  if (!file.metadata.empty()) {
    Json metadata = Json::object();
    for (const auto& [key, value] : file.metadata) metadata[key] = value;
    header[kMetadataKey] = std::move(metadata);
  }
  for (std::size_t i = 0; i < file.tensors.size(); ++i) {
    const Tensor& tensor = file.tensors[i];
    Json entry = Json::object();
    entry["dtype"] = tensor.dtype;
    entry["shape"] = tensor.shape;
    entry["data_offsets"] = {begins[i], begins[i] + tensor.data.size()};
    header[tensor.name] = std::move(entry);
  }
  std::string text;
  try {
    text = header.dump();
  } catch (const Json::exception& e) {
    PROXYATTN_FAIL(prefix, "a tensor name or metadata string is not valid UTF-8 (", e.what(), ")");
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

void write_bytes(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  PROXYATTN_CHECK(out.is_open(), path, ": cannot open for writing (", std::strerror(errno), ")");
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  PROXYATTN_CHECK(!out.fail(), path, ": writing ", bytes.size(), " bytes failed");
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
  const Json header = parse_header_json(header_text, header_size, prefix);
  PROXYATTN_CHECK(header.is_object(), prefix, "header is a JSON ", header.type_name(),
                  ", expected an object");

  const std::uint8_t* data = bytes + kHeaderSizeBytes + header_size;  // [data_size] bytes
  const std::uint64_t data_size = size - kHeaderSizeBytes - header_size;
  File file;
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      PROXYATTN_CHECK(it->is_object(), prefix, kMetadataKey, " is ", quote(*it),
                      ", expected an object of strings");
      for (auto m = it->begin(); m != it->end(); ++m) {
        PROXYATTN_CHECK(m->is_string(), prefix, kMetadataKey, " value of '", m.key(), "' is ",
                        quote(*m), ", expected a string");
        file.metadata[m.key()] = m->get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(it.key(), *it, data_size, prefix));
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
  PROXYATTN_CHECK(std::filesystem::is_regular_file(path, error), path,
                  ": not a readable regular file",
                  error ? " (" + error.message() + ")" : std::string());
  const std::uintmax_t size = std::filesystem::file_size(path, error);
  PROXYATTN_CHECK(!error, path, ": cannot get the file size (", error.message(), ")");
  std::ifstream in(path, std::ios::binary);
  PROXYATTN_CHECK(in.is_open(), path, ": cannot open for reading (", std::strerror(errno), ")");
  std::vector<std::uint8_t> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  PROXYATTN_CHECK(static_cast<std::uintmax_t>(in.gcount()) == size, path, ": read ", in.gcount(),
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
