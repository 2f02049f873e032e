// src/common/rules.h: docs/SPEC.md's small decision rules, written once and shared by the reference,
// the CPU path and the CUDA kernels (host and device).
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PROXYATTN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PROXYATTN_HOST_DEVICE inline
#endif

namespace proxyattn::rules {

/// Causal mask: query position t may attend key position u (both relative to the sequence).
PROXYATTN_HOST_DEVICE bool causal(std::int64_t t, std::int64_t u) { return u <= t; }

/// Whether key block n is forced in query block m (stage 6).
PROXYATTN_HOST_DEVICE bool is_forced(std::int64_t m, std::int64_t n, bool keep_sink,
                                     bool keep_diagonal) {
  return (keep_sink && n == 0) || (keep_diagonal && n == m);
}

/// Number of forced blocks in query block m: the sink and the diagonal coincide when m = 0.
PROXYATTN_HOST_DEVICE std::int64_t num_forced(std::int64_t m, bool keep_sink, bool keep_diagonal) {
  if (m == 0) return (keep_sink || keep_diagonal) ? 1 : 0;
  return (keep_sink ? 1 : 0) + (keep_diagonal ? 1 : 0);
}

/// Stage 6 ranking: does key block a (score sa, forced fa) rank before key block b? Forced first,
/// then score descending, NaN below every number, ties (and NaN against NaN) to the smaller index.
template <typename Score>
PROXYATTN_HOST_DEVICE bool ranks_before(bool fa, Score sa, std::int64_t a, bool fb, Score sb,
                                        std::int64_t b) {
  if (fa != fb) return fa;
  const bool na = sa != sa, nb = sb != sb;
  if (na != nb) return nb;
  if (!na && sa != sb) return sa > sb;
  return a < b;
}

/// Stage 6 count of head h in query block m from its budget n_h.
PROXYATTN_HOST_DEVICE std::int64_t count_from_budget(std::int64_t budget, std::int64_t m,
                                                     std::int64_t forced) {
  const std::int64_t c = budget < m + 1 ? budget : m + 1;
  return c > forced ? c : forced;
}

/// forced_density's count in query block m: max(forced, ceil(density * (m + 1))), at most m + 1.
PROXYATTN_HOST_DEVICE std::int64_t count_from_density(double density, std::int64_t m,
                                                      std::int64_t forced) {
  const double want = density * static_cast<double>(m + 1);
  std::int64_t c = static_cast<std::int64_t>(want);
  if (static_cast<double>(c) < want) ++c;
  if (c < forced) c = forced;
  return c < m + 1 ? c : m + 1;
}

/// Stage 5 sort order of a_h for budget_cut: descending, NaN first (a strict weak order).
PROXYATTN_HOST_DEVICE bool nan_first_descending(double x, double y) {
  return (x != x && y == y) || x > y;
}

/// Stage 5 cut: n_h, the smallest count c whose top-c sum reaches gamma * sum(a_h), where
/// sorted_at(i) is a_h's i-th largest entry and both sums run in that sorted order (so gamma = 1
/// is always reachable). nb when any entry is NaN or the sum is not positive and finite.
template <typename SortedAt>
PROXYATTN_HOST_DEVICE std::int64_t budget_cut(SortedAt sorted_at, std::int64_t nb, double gamma) {
  double total = 0.0;
  bool any_nan = false;
  for (std::int64_t i = 0; i < nb; ++i) {
    const double x = sorted_at(i);
    any_nan = any_nan || x != x;
    total += x;
  }
  const bool finite = total - total == 0.0;  // false for inf and NaN
  if (any_nan || !finite || !(total > 0.0)) return nb;
  double prefix = 0.0;
  for (std::int64_t i = 0; i < nb; ++i) {
    prefix += sorted_at(i);
    if (prefix >= gamma * total) return i + 1;
  }
  return nb;
}

/// Stage 5 clamp: min(max(n, min_blocks), max_blocks, nb).
PROXYATTN_HOST_DEVICE std::int64_t clamp_budget(std::int64_t n, std::int64_t min_blocks,
                                                std::int64_t max_blocks, std::int64_t nb) {
  std::int64_t c = n > min_blocks ? n : min_blocks;
  if (c > max_blocks) c = max_blocks;
  return c < nb ? c : nb;
}

}  // namespace proxyattn::rules
