// src/cpu/attend.cc: stage 7 on the CPU. Block-sparse attention with online softmax (fp32), one
// (sequence, head, query block) per work item; selected key blocks are visited in ascending
// order, so density 1 reproduces dense attention bit for bit (dense is the same code over the
// full causal list of 128-key blocks). Only blocks a row sees partially are masked.
//
// The micro-kernel comes from kernels::attend_kernel(active_isa()): AVX512-BF16 dot products for
// bf16, AVX-512 FMA for fp32 (and for bf16 without AVX512-BF16). K and V are packed once per
// call per (KV head, key block) and shared by the heads of the GQA group and every query block.
// Work items are handed out longest first, the heads of one KV head next to each other; each
// item is computed by one thread in a fixed order, so results do not depend on the thread count.
// The scalar tier (PROXYATTN_CPU_ISA=scalar, or no AVX-512) is the portable loop below.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <memory>
#include <vector>

#include "common/check.h"
#include "common/rules.h"
#include "cpu/backend.h"
#include "cpu/kernels/kernels.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct WorkItem {
  std::int64_t seq, head, m;
};

// The online softmax accumulates sum_u p_u v_u with p_u <= 1 over fewer than 2^31 keys, so V below
// 2^64 in magnitude keeps the fp32 sums below 2^95. A KV head whose V comes closer to the float
// (or bf16) limit is attended as V * 2^-e, exactly, and its O scaled back by 2^e: finite V never
// gives an infinite O, as the reference and the naive softmax never do (docs/STYLE.md section 6).
// At the other end, a KV head whose V lies below 2^-64 (denormal values among them, which
// vdpbf16ps reads as zero) is scaled up the same way, so its O is not flushed to zero.
constexpr int kMaxVExponent = 64;

// Largest finite |V| over rows [row0, row0 + rows) of KV head kv (NaN and Inf skipped: they flow
// through as dense attention lets them).
float v_max_abs(const Problem& p, std::int64_t kv, std::int64_t row0, std::int64_t rows) {
  const std::int64_t D = p.shape.head_dim;
  float mx = 0.0f;
  for (std::int64_t t = row0; t < row0 + rows; ++t) {
    const std::int64_t base = t * p.v_stride_n + kv * p.v_stride_h;
    if (p.dtype == DType::kBFloat16) {
      const auto* v = static_cast<const std::uint16_t*>(p.v) + base;
      std::uint16_t top = 0;  // bf16 magnitudes order as their bits
      for (std::int64_t d = 0; d < D; ++d) {
        const std::uint16_t mag = static_cast<std::uint16_t>(v[d] & 0x7fffu);
        if (mag < 0x7f80u && mag > top) top = mag;
      }
      mx = std::max(mx, bf16_to_float(top));
    } else {
      for (std::int64_t d = 0; d < D; ++d) {
        const float a = std::fabs(load_float(p.v, p.dtype, base + d));
        if (a > mx && a <= std::numeric_limits<float>::max()) mx = a;
      }
    }
  }
  return mx;
}

// e with max_abs * 2^-e in [2^-kMaxVExponent, 2^kMaxVExponent): e > 0 for V near the float
// limit, e < 0 for V below 2^-kMaxVExponent (then max_abs * 2^-e lies in [0.5, 1)); 0 for every
// ordinary V, and for V = 0 (no rescaling at all).
int v_exponent(float max_abs) {
  const bool huge = max_abs >= std::ldexp(1.0f, kMaxVExponent);
  const bool tiny = max_abs > 0.0f && max_abs < std::ldexp(1.0f, -kMaxVExponent);
  if (!huge && !tiny) return 0;
  int e = 0;
  std::frexp(max_abs, &e);  // max_abs in [2^(e-1), 2^e)
  return huge ? e - kMaxVExponent : e;
}

// Multiplies O rows [t0, t0 + rows) of head h by 2^e (exact: a power of two, in range; rounded
// once where a scaled-down value becomes denormal).
void scale_output_rows(const Problem& p, std::int64_t h, std::int64_t t0, std::int64_t rows, int e) {
  const std::int64_t D = p.shape.head_dim;
  for (std::int64_t t = t0; t < t0 + rows; ++t) {
    const std::int64_t base = t * p.o_stride_n + h * p.o_stride_h;
    for (std::int64_t d = 0; d < D; ++d) {
      store_float(p.o, p.dtype, base + d, std::ldexp(load_float(p.o, p.dtype, base + d), e));
    }
  }
}

// Per-thread tiles, reused across work items.
struct Tiles {
  std::vector<float> q, k, v, acc, row_max, row_sum, s;
};

// Attends query block m of head h over key blocks `blocks` (ascending), writing O and LSE.
// V is read as V * 2^-v_exp and O written times 2^v_exp (kMaxVExponent).
void attend_query_block(const Problem& p, const Sequence& s, std::int64_t b, std::int64_t h,
                        std::int64_t m, const std::vector<std::int64_t>& blocks, int v_exp,
                        Tiles& w) {
  const std::int64_t D = p.shape.head_dim, kv = h / p.shape.group_size();
  const std::int64_t q0 = m * b, rows = std::min(b, s.n_tokens - q0);
  w.q.resize(b * D);     // [rows, D]
  w.k.resize(b * D);     // [cols, D]
  w.v.resize(b * D);     // [cols, D]
  w.acc.assign(b * D, 0.0f);
  w.row_max.assign(b, kNegInf);
  w.row_sum.assign(b, 0.0f);
  w.s.resize(b);
  for (std::int64_t r = 0; r < rows; ++r) {
    load_row(p.q, p.dtype, (s.start + q0 + r) * p.q_stride_n + h * p.q_stride_h, D, &w.q[r * D]);
  }
  for (std::int64_t n : blocks) {
    const std::int64_t k0 = n * b, cols = std::min(b, s.n_tokens - k0);
    for (std::int64_t c = 0; c < cols; ++c) {
      load_row(p.k, p.dtype, (s.start + k0 + c) * p.k_stride_n + kv * p.k_stride_h, D, &w.k[c * D]);
      load_row(p.v, p.dtype, (s.start + k0 + c) * p.v_stride_n + kv * p.v_stride_h, D, &w.v[c * D]);
      if (v_exp != 0) {
        for (std::int64_t d = 0; d < D; ++d) w.v[c * D + d] = std::ldexp(w.v[c * D + d], -v_exp);
      }
    }
    const bool diagonal = n == m;
    for (std::int64_t r = 0; r < rows; ++r) {
      const std::int64_t t = q0 + r;
      const std::int64_t valid = diagonal ? std::min(cols, t - k0 + 1) : cols;  // causal on diagonal
      if (valid <= 0) continue;
      // s = scale * q k^T over the tile's valid keys; block max (NaN-sticky).
      float mx = w.row_max[r];
      for (std::int64_t c = 0; c < valid; ++c) {
        w.s[c] = p.scale * dot(&w.q[r * D], &w.k[c * D], D);
        mx = nan_max(mx, w.s[c]);
      }
      // Online softmax: rescale what was accumulated under the old max, then add this tile.
      const float correction = w.row_max[r] == kNegInf ? 0.0f : std::exp(w.row_max[r] - mx);
      float* acc = &w.acc[r * D];
      for (std::int64_t d = 0; d < D; ++d) acc[d] *= correction;
      float sum = w.row_sum[r] * correction;
      for (std::int64_t c = 0; c < valid; ++c) {
        const float e = std::exp(w.s[c] - mx);
        sum += e;
        const float* vrow = &w.v[c * D];
        for (std::int64_t d = 0; d < D; ++d) acc[d] += e * vrow[d];
      }
      w.row_sum[r] = sum;
      w.row_max[r] = mx;
    }
  }
  // Epilogue: O = acc / sum, LSE = max + log(sum); rows that attended nothing get 0 and -inf.
  for (std::int64_t r = 0; r < rows; ++r) {
    const std::int64_t t = s.start + q0 + r;
    const bool empty = w.row_sum[r] == 0.0f && w.row_max[r] == kNegInf;
    const float inv = empty ? 0.0f : 1.0f / w.row_sum[r];
    for (std::int64_t d = 0; d < D; ++d) {
      const float o = w.acc[r * D + d] * inv;
      store_float(p.o, p.dtype, t * p.o_stride_n + h * p.o_stride_h + d,
                  v_exp != 0 ? std::ldexp(o, v_exp) : o);
    }
    if (p.lse != nullptr) {
      p.lse[h * p.lse_stride_h + t] = empty ? kNegInf : w.row_max[r] + std::log(w.row_sum[r]);
    }
  }
}

// Runs every (sequence, head, query block) of the problem; blocks_of fills the key blocks.
template <typename BlocksOf>
void run_items_scalar(const Problem& p, std::int64_t b, int num_threads, BlocksOf blocks_of) {
  std::vector<WorkItem> items;
  std::vector<Sequence> seqs(p.shape.batch());
  for (std::int64_t i = 0; i < p.shape.batch(); ++i) {
    const std::int64_t n = p.shape.seq_len(i);
    seqs[i] = Sequence{i, p.shape.cu_seqlens[i], n, (n + b - 1) / b};
    for (std::int64_t h = 0; h < p.shape.num_qo_heads; ++h) {
      for (std::int64_t m = 0; m < seqs[i].num_blocks; ++m) items.push_back({i, h, m});
    }
  }
  // Longest rows first, for balance; the result of each item does not depend on who runs it.
  std::stable_sort(items.begin(), items.end(),
                   [](const WorkItem& x, const WorkItem& y) { return x.m > y.m; });
  const int threads = resolve_threads(num_threads);
  std::vector<int> v_exp(p.shape.num_kv_heads);
  parallel_for(p.shape.num_kv_heads, threads, [&](std::int64_t kv) {
    v_exp[kv] = v_exponent(v_max_abs(p, kv, 0, p.shape.total_tokens));
  });
  std::vector<Tiles> tiles(threads);
  std::vector<std::vector<std::int64_t>> blocks(threads);
  parallel_for_workers(static_cast<std::int64_t>(items.size()), threads,
                       [&](std::int64_t e, int slot) {
    const WorkItem& it = items[e];
    blocks_of(it, blocks[slot]);
    attend_query_block(p, seqs[it.seq], b, it.head, it.m, blocks[slot],
                       v_exp[it.head / p.shape.group_size()], tiles[slot]);
  });
}

struct FreeDeleter {
  void operator()(void* ptr) const { std::free(ptr); }
};
using AlignedBuffer = std::unique_ptr<char, FreeDeleter>;

// 64-byte aligned (4 KB for large buffers: whole pages per thread), zero-initialised lazily by
// the caller.
AlignedBuffer aligned_buffer(std::size_t bytes) {
  const std::size_t align = bytes >= (1u << 16) ? 4096 : 64;
  const std::size_t size = (std::max<std::size_t>(bytes, 1) + align - 1) / align * align;
  void* ptr = std::aligned_alloc(align, size);
  PROXYATTN_CHECK(ptr != nullptr, "CPU attention scratch of ", size, " bytes: allocation failed");
  return AlignedBuffer(static_cast<char*>(ptr));
}

struct Item {
  std::int64_t seq, head, m, cost;
};

// The SIMD path: pack K/V, then one kernel call per (sequence, head, query block).
template <typename BlocksOf>
void run_items_simd(const Problem& p, std::int64_t b, int num_threads,
                    const kernels::AttendKernel& kernel, BlocksOf blocks_of) {
  const std::int64_t Hq = p.shape.num_qo_heads, Hk = p.shape.num_kv_heads;
  const std::int64_t D = p.shape.head_dim, Dp = (D + 15) / 16 * 16, group = p.shape.group_size();
  const bool bf16 = p.dtype == DType::kBFloat16;
  const std::size_t block_bytes = kernels::packed_block_bytes(kernel.layout, b, Dp);
  const std::int64_t batch = p.shape.batch();
  std::vector<Sequence> seqs(batch);
  std::vector<std::int64_t> block_offset(batch + 1, 0);  // key blocks before sequence i
  for (std::int64_t i = 0; i < batch; ++i) {
    const std::int64_t n = p.shape.seq_len(i);
    seqs[i] = Sequence{i, p.shape.cu_seqlens[i], n, (n + b - 1) / b};
    block_offset[i + 1] = block_offset[i] + seqs[i].num_blocks;
  }
  const std::int64_t total_blocks = block_offset[batch];
  const int threads = resolve_threads(num_threads);
  // Packed K and V: [Hk][total_blocks] blocks of block_bytes each.
  const AlignedBuffer k_packed = aligned_buffer(block_bytes * Hk * total_blocks);
  const AlignedBuffer v_packed = aligned_buffer(block_bytes * Hk * total_blocks);
  const std::size_t elem = dtype_size(p.dtype);
  std::vector<float> v_block_max(Hk * total_blocks);  // [Hk][total_blocks] finite max |V|
  parallel_for(Hk * total_blocks, threads, [&](std::int64_t e) {
    const std::int64_t kv = e / total_blocks, g = e % total_blocks;
    const std::int64_t i = std::upper_bound(block_offset.begin(), block_offset.end(), g) -
                           block_offset.begin() - 1;
    const std::int64_t n = g - block_offset[i], k0 = n * b;
    const int cols = static_cast<int>(std::min(b, seqs[i].n_tokens - k0));
    const std::int64_t row0 = seqs[i].start + k0;
    const auto* k = static_cast<const char*>(p.k) + (row0 * p.k_stride_n + kv * p.k_stride_h) * elem;
    const auto* v = static_cast<const char*>(p.v) + (row0 * p.v_stride_n + kv * p.v_stride_h) * elem;
    kernels::pack_block(kernel.layout, bf16, static_cast<int>(b), static_cast<int>(D),
                        static_cast<int>(Dp), k, p.k_stride_n, v, p.v_stride_n, cols,
                        k_packed.get() + e * block_bytes, v_packed.get() + e * block_bytes,
                        kernel.isa);
    v_block_max[e] = v_max_abs(p, kv, row0, cols);
  });
  // V near the float limit or below 2^-64: that KV head's packed V times 2^-e (kMaxVExponent).
  std::vector<int> v_exp(Hk, 0);
  for (std::int64_t kv = 0; kv < Hk; ++kv) {
    float mx = 0.0f;
    for (std::int64_t g = 0; g < total_blocks; ++g) mx = std::max(mx, v_block_max[kv * total_blocks + g]);
    v_exp[kv] = v_exponent(mx);
  }
  if (std::any_of(v_exp.begin(), v_exp.end(), [](int e) { return e != 0; })) {
    parallel_for(Hk * total_blocks, threads, [&](std::int64_t e) {
      const int shift = v_exp[e / total_blocks];
      if (shift != 0) kernels::scale_packed_v(kernel.layout, b, Dp, -shift, v_packed.get() + e * block_bytes);
    });
  }
  // Work items, costliest first; ties keep a KV head's query heads together (shared K/V in L2).
  std::vector<Item> items;
  std::vector<std::int64_t> list;
  for (std::int64_t i = 0; i < batch; ++i) {
    for (std::int64_t h = 0; h < Hq; ++h) {
      for (std::int64_t m = 0; m < seqs[i].num_blocks; ++m) {
        blocks_of(WorkItem{i, h, m}, list);
        items.push_back({i, h, m, static_cast<std::int64_t>(list.size())});
      }
    }
  }
  std::stable_sort(items.begin(), items.end(), [&](const Item& x, const Item& y) {
    if (x.cost != y.cost) return x.cost > y.cost;
    if (x.seq != y.seq) return x.seq < y.seq;
    if (x.head / group != y.head / group) return x.head / group < y.head / group;
    if (x.m != y.m) return x.m < y.m;
    return x.head < y.head;
  });
  const std::size_t scratch_floats =
      kernels::scratch_layout(static_cast<int>(b), static_cast<int>(D), static_cast<int>(Dp)).total;
  const std::size_t scratch_stride = (scratch_floats * sizeof(float) + 4095) / 4096 * 4096;
  // parallel_for_workers hands out slots below min(threads, items).
  const std::size_t workers = std::min<std::size_t>(threads, std::max<std::size_t>(items.size(), 1));
  const AlignedBuffer scratch = aligned_buffer(scratch_stride * workers);
  std::vector<std::vector<std::int64_t>> lists(workers);
  std::vector<std::vector<std::int32_t>> blocks(workers);
  parallel_for_workers(static_cast<std::int64_t>(items.size()), threads,
                       [&](std::int64_t e, int slot) {
    const Item& it = items[e];
    const Sequence& s = seqs[it.seq];
    blocks_of(WorkItem{it.seq, it.head, it.m}, lists[slot]);
    blocks[slot].assign(lists[slot].begin(), lists[slot].end());
    const std::int64_t kv = it.head / group, q0 = it.m * b;
    kernels::AttendItem a;
    a.block = static_cast<int>(b);
    a.head_dim = static_cast<int>(D);
    a.padded_dim = static_cast<int>(Dp);
    a.bf16 = bf16;
    a.scale = p.scale;
    a.q0 = q0;
    a.rows = static_cast<int>(std::min(b, s.n_tokens - q0));
    a.n_tokens = s.n_tokens;
    a.q = static_cast<const char*>(p.q) + ((s.start + q0) * p.q_stride_n + it.head * p.q_stride_h) * elem;
    a.q_stride = p.q_stride_n;
    a.key_blocks = blocks[slot].data();
    a.num_key_blocks = static_cast<int>(blocks[slot].size());
    const std::size_t base = (kv * total_blocks + block_offset[it.seq]) * block_bytes;
    a.k_packed = k_packed.get() + base;
    a.v_packed = v_packed.get() + base;
    a.packed_block_bytes = block_bytes;
    a.o = static_cast<char*>(p.o) + ((s.start + q0) * p.o_stride_n + it.head * p.o_stride_h) * elem;
    a.o_stride = p.o_stride_n;
    a.lse = p.lse != nullptr ? p.lse + it.head * p.lse_stride_h + s.start + q0 : nullptr;
    a.scratch = reinterpret_cast<float*>(scratch.get() + slot * scratch_stride);
    kernel.attend(a);
    if (v_exp[kv] != 0) scale_output_rows(p, it.head, s.start + q0, a.rows, v_exp[kv]);
  });
}

template <typename BlocksOf>
void run_items(const Problem& p, std::int64_t b, int num_threads, BlocksOf blocks_of) {
  const kernels::AttendKernel kernel =
      kernels::attend_kernel(kernels::active_isa(), p.dtype == DType::kBFloat16);
  if (kernel.attend == nullptr) {
    run_items_scalar(p, b, num_threads, [&](const WorkItem& it, std::vector<std::int64_t>& out) {
      blocks_of(it, out);
    });
  } else {
    run_items_simd(p, b, num_threads, kernel, blocks_of);
  }
}

}  // namespace

void attend(const Problem& p, const Plan& plan, const Runtime& runtime) {
  const PlanLayout& l = plan.layout;
  run_items(p, l.block_size, runtime.num_threads, [&](const WorkItem& it, std::vector<std::int64_t>& out) {
    const BlockIndex* order = plan.row_order(it.seq, it.head, it.m);
    const std::int32_t count = plan.counts[l.head_index(it.seq, it.head, it.m)];
    out.assign(order, order + count);
    std::sort(out.begin(), out.end());
  });
}

void dense(const Problem& p, const Runtime& runtime) {
  constexpr std::int64_t kBlock = 128;
  run_items(p, kBlock, runtime.num_threads, [](const WorkItem& it, std::vector<std::int64_t>& out) {
    out.resize(it.m + 1);
    for (std::int64_t n = 0; n <= it.m; ++n) out[n] = n;
  });
}

}  // namespace proxyattn::cpu
