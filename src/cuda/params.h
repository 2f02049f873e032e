// src/cuda/params.h: the Params structs the CUDA kernels take by value (__grid_constant__). Plain
// C++: raw pointers, int64 strides in elements, sizes. Built on the host from Problem and Plan.
#pragma once

#include <vector_types.h>  // float2 (CUDA's plain-C vector types; host code can include this file)

#include <cstdint>

namespace proxyattn::cuda {

/// Sequences one attention launch covers; the kernel finds its own by a scan over cta_start.
constexpr int kMaxSeqsPerLaunch = 32;

/// \brief One sequence of a packed batch, as a launch sees it.
struct SeqDesc {
  std::int64_t token_start = 0;   ///< cu_seqlens[i]
  std::int64_t order_offset = 0;  ///< start of the sequence in group_order (elements)
  std::int64_t head_offset = 0;   ///< start of the sequence in counts / last_order (elements)
  std::int32_t len = 0;           ///< N_i
  std::int32_t num_blocks = 0;    ///< nb_i
  std::int32_t cta_start = 0;     ///< first grid row (blockIdx.y) of the sequence
  std::int32_t dense = 0;         ///< 1: every causal block, no plan read
};

/// \brief Stage 7 (and dense attention): block-sparse causal attention over a plan.
struct AttendParams {
  const void* q = nullptr;  // [total_tokens, num_qo_heads, head_dim]
  const void* k = nullptr;  // [total_tokens, num_kv_heads, head_dim]
  const void* v = nullptr;  // [total_tokens, num_kv_heads, head_dim]
  void* o = nullptr;        // [total_tokens, num_qo_heads, head_dim]
  float* lse = nullptr;     // [num_qo_heads, total_tokens] or nullptr
  std::int64_t q_stride_n = 0, q_stride_h = 0;
  std::int64_t k_stride_n = 0, k_stride_h = 0;
  std::int64_t v_stride_n = 0, v_stride_h = 0;
  std::int64_t o_stride_n = 0, o_stride_h = 0;
  std::int64_t lse_stride_h = 0;
  std::int64_t total_tokens = 0;  ///< rows of q/k/v/o (the TMA descriptors' extent)
  std::int32_t num_qo_heads = 0;
  std::int32_t num_kv_heads = 0;
  std::int32_t group_size = 1;       ///< query heads per KV head
  std::int32_t heads_per_group = 1;  ///< query heads per proxy group (plan rows)
  float scale_log2 = 0.0f;           ///< softmax scale * log2(e)

  const std::int16_t* group_order = nullptr;  // plan arrays (unused for dense sequences)
  const std::int16_t* last_order = nullptr;
  const std::int32_t* counts = nullptr;
  std::int32_t* flags = nullptr;  // [4] device-side error flags; may be nullptr

  std::int32_t num_seqs = 0;
  SeqDesc seqs[kMaxSeqsPerLaunch];
};

/// \brief Stages 2-4 of one sequence: proxy pooling, strided logits, log-space block scores.
struct EstimateParams {
  const void* q = nullptr;  // [total_tokens, num_qo_heads, head_dim]
  const void* k = nullptr;  // [total_tokens, num_kv_heads, head_dim]
  std::int64_t q_stride_n = 0, q_stride_h = 0;
  std::int64_t k_stride_n = 0, k_stride_h = 0;
  std::int64_t token_start = 0;
  std::int32_t len = 0;          ///< N
  std::int32_t num_samples = 0;  ///< ceil(N / stride)
  std::int32_t stride = 4;
  std::int32_t block_size = 128;
  std::int32_t num_blocks = 0;  ///< nb
  std::int32_t num_proxy_heads = 1;
  std::int32_t q_heads_per_group = 1, kv_heads_per_group = 1;
  float q_inv_count = 1.0f, k_inv_count = 1.0f;  ///< 1 / heads per group, fp32
  float scale = 1.0f;
  void* proxy_q = nullptr;        // [g, num_samples, head_dim] input dtype
  void* proxy_k = nullptr;        // [g, num_samples, head_dim] input dtype
  float* proxy_lse = nullptr;     // [g, num_samples]  lse_j[t] (log2 units)
  float* block_scores = nullptr;  // [g, tri(nb)]  S_j[m][n] at m(m+1)/2 + n
  /// Both passes split each row tile's sampled keys into chunks of key_chunk_tiles tiles of 64
  /// (grid z), so that the long rows of a long sequence spread over many CTAs; with more than one
  /// chunk the lse pass writes per-chunk (max, sum) partials that a merge kernel combines.
  std::int32_t key_chunk_tiles = 1 << 30;
  float2* lse_partials = nullptr;  // [chunks, g, num_samples]  (max log2, sum of 2^(x - max))
};

/// \brief Stage 5 of one sequence: per-head last-block masses a_h, budgets n_h and (exact
/// last-block selection) the last block's per-head orders.
struct BudgetParams {
  const void* q = nullptr;
  const void* k = nullptr;
  std::int64_t q_stride_n = 0, q_stride_h = 0;
  std::int64_t k_stride_n = 0, k_stride_h = 0;
  std::int64_t token_start = 0;
  std::int32_t len = 0;        ///< N
  std::int32_t last_rows = 0;  ///< R = min(b, N)
  std::int32_t block_size = 128;
  std::int32_t num_blocks = 0;
  std::int32_t num_qo_heads = 0;
  std::int32_t group_size = 1;  ///< query heads per KV head
  float scale_log2 = 0.0f;
  float2* partials = nullptr;  // [H, nb, R]  (max log2, sum of 2^(x - max)) per row and key block
  float* mass = nullptr;       // [H, nb]  a_h[n]
  // The cut: n_h = clamp(budget_cut(a_h, gamma), min_blocks, max_blocks, nb).
  std::int32_t* budgets = nullptr;     // [H]
  std::int16_t* last_order = nullptr;  // [H, nb]  written when exact_last
  double gamma = 0.95;
  std::int64_t min_blocks = 0;
  std::int64_t max_blocks = 0;  ///< Config::max_budget_blocks() (no bound: INT64_MAX)
  std::int32_t keep_sink = 1, keep_diagonal = 1;
  std::int32_t exact_last = 1;
};

/// \brief Stage 6 of one sequence, after the scores (stage 4) and budgets (stage 5).
struct SelectParams {
  const float* block_scores = nullptr;  // [g, tri(nb)]
  std::int16_t* group_order = nullptr;  // [g, tri(nb)]
  std::int16_t* last_order = nullptr;   // [H, nb]  written here unless exact_last
  std::int32_t* counts = nullptr;       // [H, nb]
  std::int32_t* budgets = nullptr;      // [H]  read (dense sequences: written)
  float* density = nullptr;             // [H]
  std::int32_t num_blocks = 0;
  std::int32_t num_qo_heads = 0;
  std::int32_t heads_per_group = 1;
  std::int32_t keep_sink = 1, keep_diagonal = 1;
  std::int32_t exact_last = 1;
  double forced_density = 0.0;
};

}  // namespace proxyattn::cuda
