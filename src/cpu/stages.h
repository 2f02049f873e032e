// src/cpu/stages.h: docs/SPEC.md's stages on the CPU, one file each, for one sequence at a time.
// Tokens are relative to the sequence; `start` is its first row in the packed tensors.
#pragma once

#include <cstdint>

#include "common/numeric.h"
#include "proxyattn/config.h"
#include "proxyattn/plan.h"
#include "common/problem.h"

namespace proxyattn::cpu {

/// \brief One sequence of the packed batch.
struct Sequence {
  std::int64_t index = 0;     // i
  std::int64_t start = 0;     // cu_seqlens[i]
  std::int64_t n_tokens = 0;  // N
  std::int64_t num_blocks = 0;  // nb
};

/// \brief Stage 2: proxy rows of the sampled positions, rounded to the input dtype.
/// \param proxy_q [samples, g, head_dim]   \param proxy_k [samples, g, head_dim]
void pool_proxy(const Problem& p, const Config& c, const Sequence& s, float* proxy_q,
                float* proxy_k, int threads);

/// \brief Stages 3-4: log-space block scores S of every group, rows laid out as group_order.
/// \param block_scores [g, tri(nb)] for this sequence
void block_scores_stage(const Problem& p, const Config& c, const Sequence& s, const float* proxy_q,
                  const float* proxy_k, float* block_scores, int threads);

/// \brief Stage 5: log(a_h) (into mass, [H, nb] for this sequence; -inf where a_h is 0) and the
/// clamped budgets n_h.
void budgets(const Problem& p, const Config& c, const Sequence& s, float* mass,
             std::int32_t* budgets, int threads);

/// \brief Stage 6: group orders, per-head last-block orders and counts into the plan.
void select(const Config& c, const Sequence& s, const float* block_scores, const float* mass,
            Plan& plan, int threads);

/// \brief Dot product of two float rows, fp32 accumulation in a fixed order.
inline float dot(const float* a, const float* b, std::int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::int64_t d = 0;
  for (; d + 8 <= n; d += 8) {
    for (int e = 0; e < 8; ++e) acc[e] += a[d + e] * b[d + e];
  }
  for (; d < n; ++d) acc[0] += a[d] * b[d];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/// \brief Converts n elements of dtype at data + offset to floats.
inline void load_row(const void* data, DType dtype, std::int64_t offset, std::int64_t n,
                     float* dst) {
  for (std::int64_t d = 0; d < n; ++d) dst[d] = load_float(data, dtype, offset + d);
}

/// \brief max that keeps NaN: once either side is NaN the result is NaN.
inline float nan_max(float a, float b) { return (a != a || b != b) ? (a != a ? a : b) : (a > b ? a : b); }

}  // namespace proxyattn::cpu
