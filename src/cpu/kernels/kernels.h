// src/cpu/kernels/kernels.h: the CPU attention micro-kernels behind run-time dispatch. This header
// is ISA-free: baseline translation units include it, and each ISA tier (kernels/avx512*.cc) is
// compiled with its own target flags and reached only through the function pointers below, so
// the library runs on any x86-64 (docs/STYLE.md, dispatch).
#pragma once

#include <cstddef>
#include <cstdint>

namespace proxyattn::cpu::kernels {

/// \brief The instruction tiers the CPU kernels are written for, weakest first.
enum class Isa : int { kScalar = 0, kAvx512 = 1, kAvx512Bf16 = 2, kAmx = 3 };

/// \brief How K and V of one key block are packed for a kernel.
/// kBf16Pairs: K as [head_dim/2][block][2] bf16, V as [block/2][padded_dim][2] bf16 (dword =
///   one bf16 pair along the reduction dimension, the vdpbf16ps operand layout).
/// kFp32: K as [head_dim][block] fp32, V as [block][padded_dim] fp32.
enum class PackLayout : int { kBf16Pairs = 0, kFp32 = 1 };

/// \brief One (head, query block) of attention: Q rows, the ascending key blocks to visit, packed
/// K/V of the head's KV head, output and per-thread scratch. Tokens are relative to the sequence.
struct AttendItem {
  // Geometry.
  int block = 0;               // b: 64 or 128 (query and key block size)
  int head_dim = 0;            // D, a multiple of 8
  int padded_dim = 0;          // Dp = D rounded up to 16
  bool bf16 = false;           // input/output dtype: bf16 when true, fp32 otherwise
  float scale = 0.0f;          // softmax scale (natural-log units)
  std::int64_t q0 = 0;         // first query token of the block (m * b)
  int rows = 0;                // query rows in this block (b, or fewer at the end)
  std::int64_t n_tokens = 0;   // N: keys of the sequence
  // Operands.
  const void* q = nullptr;     // [rows] rows of D elements at q + r * q_stride
  std::int64_t q_stride = 0;   // elements between consecutive query rows
  const std::int32_t* key_blocks = nullptr;  // [num_key_blocks] ascending
  int num_key_blocks = 0;
  const void* k_packed = nullptr;  // block n at k_packed + n * packed_block_bytes (PackLayout)
  const void* v_packed = nullptr;  // same
  std::size_t packed_block_bytes = 0;
  void* o = nullptr;           // [rows] rows of D elements at o + r * o_stride
  std::int64_t o_stride = 0;
  float* lse = nullptr;        // [rows] at lse[r], optional
  // Per-thread scratch (64-byte aligned), scratch_layout(block, head_dim, padded_dim).total floats.
  float* scratch = nullptr;
};

/// Scratch rows are b + kExtraRows, so a strip of up to 8 rows may run past the block's last row.
constexpr int kExtraRows = 8;
// Helpers here are `static inline`: each translation unit keeps its own copy, so one compiled
// with AVX-512 flags can never be the copy a baseline unit links to.
static inline std::size_t round16(std::size_t n) { return (n + 15) / 16 * 16; }

/// \brief Scratch layout of one AttendItem (offsets in floats, each part 64-byte aligned):
/// acc [b'][dp], m [b'], l [b'][16], P strip [8][b], Q [b'][d] in fp32, with b' = b + kExtraRows.
struct ScratchLayout {
  std::size_t acc, m, l, p, q, total;
};
static inline ScratchLayout scratch_layout(int b, int d, int dp) {
  const std::size_t rows = static_cast<std::size_t>(b) + kExtraRows;
  ScratchLayout s{};
  s.acc = 0;
  s.m = s.acc + round16(rows * dp);
  s.l = s.m + round16(rows);
  s.p = s.l + round16(rows * 16);
  s.q = s.p + round16(8 * static_cast<std::size_t>(b));
  s.total = s.q + round16(rows * d);
  return s;
}

/// \brief Packed bytes of one key block of K (or V) for a layout.
static inline std::size_t packed_block_bytes(PackLayout layout, int b, int dp) {
  const std::size_t elems = static_cast<std::size_t>(b) * dp;
  return layout == PackLayout::kBf16Pairs ? elems * 2 : elems * 4;
}

/// \brief Per-(row, key block) softmax statistics of logits L[r][u] = scale * <q_r, k_u> for up
/// to 128 query rows (lanes) against a run of keys, for the plan stages: the block max
/// bmax[n][r] = max over visible keys u of block n of L[r][u] (natural-log units), and
/// bsum[n][r] = sum over the same keys of exp(L[r][u] - bmax[n][r]); -inf and 0 where row r sees
/// no key of block n. Row r is token row0 + r and sees key u iff u <= row0 + r (causal).
struct StatsItem {
  int rows = 0;              // valid rows, <= rows_pad
  int rows_pad = 0;          // 16, 32, 64 or 128 (lanes)
  int head_dim = 0;          // D (multiple of 8)
  float scale = 0.0f;
  std::int64_t row0 = 0;     // token of row 0, in key units
  const void* q_packed = nullptr;  // fp32 [D][rows_pad] (fp32 kernel) or bf16 [D/2][rows_pad][2]
  const void* k = nullptr;   // key u at k + u * k_stride elements, fp32 or bf16 (k_bf16)
  std::int64_t k_stride = 0;
  bool k_bf16 = false;
  std::int64_t n_keys = 0;   // keys [0, n_keys); keys beyond row0 + rows - 1 are not visited
  int key_block = 0;         // keys per statistics block (<= 128)
  float* bmax = nullptr;     // [ceil(n_keys / key_block)][rows_pad]
  float* bsum = nullptr;     // same
  float* tile = nullptr;     // scratch [32][rows_pad] floats, 64-byte aligned
};

using StatsFn = void (*)(const StatsItem& item);

/// \brief The statistics kernel for tier isa: fp32 FMA (q_packed fp32) or, with bf16_pairs,
/// vdpbf16ps (q_packed bf16 pairs, k bf16); nullptr for the scalar tier.
StatsFn stats_kernel(Isa isa, bool bf16_pairs);

// Per-tier statistics entries.
void logit_stats_avx512_fp32(const StatsItem& item);
void logit_stats_avx512bf16(const StatsItem& item);

/// \brief dst[c] = round_to_dtype(inv * sum over `heads` rows r of src[r * stride + c]), c < d,
/// rows summed in increasing order in fp32 (the proxy-head pooling of stage 2).
using PoolFn = void (*)(const void* src, bool bf16, std::int64_t stride, int heads, int d,
                        float inv, float* dst);
/// \brief The pooling kernel for tier isa; nullptr for the scalar tier.
PoolFn pool_kernel(Isa isa);
void pool_rows_avx512(const void* src, bool bf16, std::int64_t stride, int heads, int d, float inv,
                      float* dst);

using AttendFn = void (*)(const AttendItem& item);

/// \brief A kernel for one (ISA, dtype): its pack layout and its attention entry.
struct AttendKernel {
  Isa isa = Isa::kScalar;
  PackLayout layout = PackLayout::kFp32;
  AttendFn attend = nullptr;
  const char* name = "";
};

/// \brief Bits the processor and OS support (cpuid + xgetbv, AMX permission requested).
struct CpuFeatures {
  bool avx512 = false;       // F, BW, VL, DQ with OS zmm state
  bool avx512_bf16 = false;  // plus AVX512_BF16
  bool amx = false;          // AMX-TILE + AMX-BF16, OS tile state, permission granted
};

/// \brief Detected once per process.
const CpuFeatures& cpu_features();
/// \brief Best tier the machine has.
Isa best_isa();
/// \brief The tier kernels run: PROXYATTN_CPU_ISA (scalar|avx512|avx512bf16|amx) if set, else
/// best_isa(). Throws proxyattn::Error if the variable names an unknown tier or one the machine
/// lacks. Read on every call (cheap), so tests can switch tiers.
Isa active_isa();
/// \brief "scalar", "avx512", "avx512bf16" or "amx".
const char* isa_name(Isa isa);
/// \brief Whether the machine can run tier isa.
bool isa_supported(Isa isa);

/// \brief The attention kernel for tier isa and bf16/fp32 inputs; attend == nullptr for the
/// scalar tier (the portable loop in attend.cc runs instead).
AttendKernel attend_kernel(Isa isa, bool bf16);

/// \brief Packs key block [k0, k0 + cols) of one KV head (rows of D elements at k + t * k_stride,
/// v likewise) into k_dst / v_dst in `layout`; keys cols..b-1 are zero.
void pack_block(PackLayout layout, bool bf16, int b, int d, int dp, const void* k,
                std::int64_t k_stride, const void* v, std::int64_t v_stride, int cols, void* k_dst,
                void* v_dst, Isa isa = Isa::kScalar);

/// \brief Multiplies a packed V block (b keys, padded_dim columns, `layout`) by 2^e in place,
/// rounding to the layout's type (exact unless a value leaves the normal range).
void scale_packed_v(PackLayout layout, int b, int dp, int e, void* v_block);

/// \brief pack_block for kBf16Pairs with AVX-512 (gathers for K, 16-bit permutes for V);
/// destinations zeroed beforehand where cols < b or dp != d, 64-byte aligned.
void pack_bf16_pairs_avx512(int b, int d, int dp, const std::uint16_t* k, std::int64_t k_stride,
                            const std::uint16_t* v, std::int64_t v_stride, int cols,
                            std::uint16_t* k_dst, std::uint16_t* v_dst);

// Per-tier entries (defined in the tier's translation unit, called only where supported).
void attend_avx512_fp32(const AttendItem& item);      // fp32 FMA on fp32 or bf16 inputs
void attend_avx512bf16(const AttendItem& item);       // vdpbf16ps on bf16 inputs
/// \brief Peak loops: 24 independent zmm FMA (fp32) or vdpbf16ps chains, or 4 AMX tdpbf16ps
/// tiles, for `seconds` of the calling thread's CPU time; GFLOP per thread-CPU second. Call only
/// where the tier exists (proxyattn/cpu.h runs them on several threads at once).
double peak_avx512_fp32_loop(double seconds);
double peak_avx512bf16_loop(double seconds);
double peak_amx_bf16_loop(double seconds);

}  // namespace proxyattn::cpu::kernels
