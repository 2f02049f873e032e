// proxyattn/safetensors.h: a bounds-checked reader and writer for the safetensors format, and the
// Q/K/V file contract of docs/SPEC.md section 5.
//
// File layout (https://huggingface.co/docs/safetensors):
//   [8 bytes]  header_size N, unsigned little-endian
//   [N bytes]  UTF-8 JSON object: {"__metadata__": {str: str}, name: {"dtype": "F32",
//              "shape": [d0, d1, ...], "data_offsets": [begin, end]}, ...}
//   [rest]     the data section; offsets are relative to its start, tensors are row-major and
//              little-endian, and together they cover it exactly, without gaps or overlaps.
//
// Every malformed input raises proxyattn::Error whose message starts with the file's name and says
// what is wrong; nothing reads outside the given bytes. Tensor data is copied out, so callers never
// see an unaligned pointer. The library assumes a little-endian host, as safetensors does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "proxyattn/types.h"

namespace proxyattn::safetensors {

/// \brief The largest header accepted, as in the reference implementation (100 MB).
constexpr std::uint64_t kMaxHeaderSize = 100'000'000;

/// \brief One named tensor, owning a copy of its bytes.
struct Tensor {
  std::string name;
  std::string dtype;  // the format's spelling: "F32", "BF16", "F16", "I32", "I64", ...
  std::vector<std::int64_t> shape;  // row-major; empty for a scalar
  std::vector<std::uint8_t> data;   // [numel * element_size(dtype)] bytes, little-endian

  /// \brief The product of shape; throws Error on a negative extent or an int64 overflow.
  std::int64_t numel() const;
};

/// \brief A whole safetensors file: tensors in header order, plus the optional string metadata.
struct File {
  std::vector<Tensor> tensors;
  std::map<std::string, std::string> metadata;  // "__metadata__"; empty when absent

  /// \brief The tensor called name, or nullptr.
  const Tensor* find(const std::string& name) const;
};

/// \brief Bytes per element of a format dtype ("F32" -> 4, "BF16" -> 2, "BOOL" -> 1, ...), or 0
/// for a name the format does not define (or a sub-byte type this reader does not support).
std::size_t element_size(const std::string& dtype);

/// \brief The format's name of a library dtype: kFloat32 -> "F32", kBFloat16 -> "BF16",
/// kFloat16 -> "F16".
const char* dtype_name(DType dtype);

/// \brief Parses a complete file held in memory.
/// \param bytes the file's contents; may be nullptr when size is 0
/// \param size the number of bytes
/// \param source_name names the input in error messages (usually the path)
File parse(const std::uint8_t* bytes, std::size_t size, const std::string& source_name);

/// \brief Reads and parses the file at path.
File read(const std::string& path);

/// \brief Encodes file: the header lists the tensors in their order in file.tensors and is padded
/// with spaces to a multiple of 8 bytes; the data section puts wider elements first, so every
/// tensor starts at a multiple of its element size. Throws Error on an invalid tensor (unknown
/// dtype, negative extent, data size != numel * element size, duplicate or reserved name).
std::vector<std::uint8_t> serialize(const File& file);

/// \brief serialize(file), written to path.
void write(const std::string& path, const File& file);

// --- Q/K/V files (docs/SPEC.md section 5) -------------------------------------------------------------

/// \brief A validated attention input: tensors "q", "k", "v" and optionally "cu_seqlens".
struct QkvFile {
  Tensor q;                              // [tokens, num_qo_heads, head_dim]
  Tensor k;                              // [tokens, num_kv_heads, head_dim]
  Tensor v;                              // [tokens, num_kv_heads, head_dim]
  std::vector<std::int32_t> cu_seqlens;  // [batch + 1], 0 .. tokens; empty when absent
  DType dtype = DType::kFloat32;

  std::int64_t tokens() const { return q.shape[0]; }
  std::int64_t num_qo_heads() const { return q.shape[1]; }
  std::int64_t num_kv_heads() const { return k.shape[1]; }
  std::int64_t head_dim() const { return q.shape[2]; }
};

/// \brief Checks file against the Q/K/V contract and copies the tensors out. The contract:
/// q, k and v present, each of rank 3, all of one dtype among F32, BF16 and F16; the same number
/// of tokens (>= 1) and head_dim (>= 1); k and v of one shape; num_kv_heads >= 1 and
/// num_qo_heads % num_kv_heads == 0; cu_seqlens, when present, I32 of rank 1, starting at 0,
/// non-decreasing and ending at tokens. Other tensors are ignored.
/// \param source_name names the input in error messages
QkvFile to_qkv(const File& file, const std::string& source_name);

/// \brief to_qkv(read(path), path).
QkvFile read_qkv(const std::string& path);

/// \brief Builds a Q/K/V file from contiguous host buffers and checks it against the contract.
/// \param dtype element type of q, k and v
/// \param q [tokens, num_qo_heads, head_dim] row-major
/// \param k [tokens, num_kv_heads, head_dim] row-major
/// \param v [tokens, num_kv_heads, head_dim] row-major
/// \param cu_seqlens [batch + 1]; an empty span writes no "cu_seqlens" tensor
File make_qkv(DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
              std::int64_t num_kv_heads, std::int64_t head_dim, const void* q, const void* k,
              const void* v, CuSeqlens cu_seqlens = {});

/// \brief write(path, make_qkv(...)).
void write_qkv(const std::string& path, DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
               std::int64_t num_kv_heads, std::int64_t head_dim, const void* q, const void* k,
               const void* v, CuSeqlens cu_seqlens = {});

}  // namespace proxyattn::safetensors
