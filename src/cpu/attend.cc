// src/cpu/attend.cc: stage 7 on the CPU. Block-sparse attention with online softmax (fp32), one
// (sequence, head, query block) per work item; selected key blocks are visited in ascending
// order, so density 1 reproduces dense attention bit for bit. Only the diagonal tile is masked.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/rules.h"
#include "cpu/backend.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct WorkItem {
  std::int64_t seq, head, m;
};

// Per-thread tiles, reused across work items.
struct Tiles {
  std::vector<float> q, k, v, acc, row_max, row_sum, s;
};

// Attends query block m of head h over key blocks `blocks` (ascending), writing O and LSE.
void attend_query_block(const Problem& p, const Sequence& s, std::int64_t b, std::int64_t h,
                        std::int64_t m, const std::vector<std::int64_t>& blocks, Tiles& w) {
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
      store_float(p.o, p.dtype, t * p.o_stride_n + h * p.o_stride_h + d, w.acc[r * D + d] * inv);
    }
    if (p.lse != nullptr) {
      p.lse[h * p.lse_stride_h + t] = empty ? kNegInf : w.row_max[r] + std::log(w.row_sum[r]);
    }
  }
}

// Runs every (sequence, head, query block) of the problem; blocks_of fills the key blocks.
template <typename BlocksOf>
void run_items(const Problem& p, std::int64_t b, int num_threads, BlocksOf blocks_of) {
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
  std::vector<Tiles> tiles(threads);
  std::vector<std::vector<std::int64_t>> blocks(threads);
  parallel_for_workers(static_cast<std::int64_t>(items.size()), threads,
                       [&](std::int64_t e, int slot) {
    const WorkItem& it = items[e];
    blocks_of(it, blocks[slot]);
    attend_query_block(p, seqs[it.seq], b, it.head, it.m, blocks[slot], tiles[slot]);
  });
}

}  // namespace

void attend(const Problem& p, const Plan& plan, const Runtime& runtime) {
  const WorkspaceLayout& l = plan.layout;
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
