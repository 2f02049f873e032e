// proxyattn/oracle/workload.h: generated problems shared by tests, benchmarks and the CLI.
// Every tensor has its own seed; inputs are rounded to the dtype before anyone reads them.
#pragma once

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "proxyattn/proxyattn.h"

namespace proxyattn::testing {

/// \brief Host memory, 256-byte aligned and zero-filled (a valid workspace).
using Buffer = proxyattn::Buffer;

enum class WorkloadKind {
  kRandom,      ///< i.i.d. normal q, k, v
  kStructured,  ///< sinks, local RoPE-like decay, vertical stripes, head sharpness, needles
  kOnes,        ///< every element 1 (debugging)
  kArange,      ///< element e is (e % 17) / 17 (debugging)
};
WorkloadKind parse_workload(const std::string& name);
const char* to_string(WorkloadKind kind);

struct WorkloadSpec {
  std::vector<std::int32_t> seq_lens{1024};
  std::int64_t num_qo_heads = 4, num_kv_heads = 1, head_dim = 64;
  DType dtype = DType::kFloat32;
  WorkloadKind kind = WorkloadKind::kStructured;
  std::uint64_t seed = 0;
};

/// \brief A planted needle: the last query block of every head attends to key `position`.
struct Needle {
  std::int64_t seq = 0, position = 0;
};

/// \brief q, k, v on the host in spec.dtype, packed [total_tokens, heads, head_dim].
struct Workload {
  WorkloadSpec spec;
  std::vector<std::int32_t> cu_seqlens;  // [batch + 1]
  std::int64_t total_tokens = 0;
  Buffer q, k, v;
  std::vector<Needle> needles;

  TensorView q_view() const;
  TensorView k_view() const;
  TensorView v_view() const;
  CuSeqlens seqlens() const { return {cu_seqlens.data(), static_cast<std::int64_t>(cu_seqlens.size())}; }
  ProblemShape shape() const;
};

Workload make_workload(const WorkloadSpec& spec);

/// \brief The same, spelled out: sequence lengths, heads, head_dim, dtype, kind and seed.
Workload make_workload(std::vector<std::int32_t> seq_lens, std::int64_t num_qo_heads,
                       std::int64_t num_kv_heads, std::int64_t head_dim, DType dtype,
                       WorkloadKind kind = WorkloadKind::kStructured, std::uint64_t seed = 1);

/// \brief Builds a Workload from existing host q/k/v bytes (e.g. a safetensors file).
Workload workload_from_tensors(DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
                               std::int64_t num_kv_heads, std::int64_t head_dim,
                               const void* q, const void* k, const void* v,
                               std::vector<std::int32_t> cu_seqlens);

/// \brief An output tensor [total_tokens, num_qo_heads, head_dim] and lse [num_qo_heads, tokens].
struct Output {
  Buffer o, lse;
  TensorView o_view, lse_view;
};
Output make_output(const Workload& w);

/// \brief docs/SPEC.md section 4's random masks as a user-built plan (g = num_kv_heads): row m keeps
/// min(m + 1, max(2, ceil(density (m + 1)))) blocks: sink, diagonal, then a random order seeded
/// by (seed, kv head, m). The plan lives in `workspace` (workspace_size with g = num_kv_heads).
Plan random_mask_plan(const ProblemShape& shape, int block_size, double density,
                      std::uint64_t seed, Buffer& workspace);

/// \brief splitmix64: seeds derived from (seed, stream).
std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t stream);

}  // namespace proxyattn::testing

namespace proxyattn {
// Readable parameters in GoogleTest listings and failures.
inline void PrintTo(LastBlockSelection mode, std::ostream* os) { *os << to_string(mode); }
inline void PrintTo(DType dtype, std::ostream* os) { *os << to_string(dtype); }
}  // namespace proxyattn
