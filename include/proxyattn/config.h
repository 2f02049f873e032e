// proxyattn/config.h: the knobs of SPEC.md section 2, with their defaults.
#pragma once

#include <cstdint>
#include <string>

namespace proxyattn {

/// \brief How the last query block of each head is ranked (SPEC.md stage 6).
enum class LastBlockSelection : int {
  kExact = 0,  ///< by the head's own exact last-block mass a_h [deviation, default]
  kProxy = 1,  ///< by the group's proxy block scores, as the paper does
};

const char* to_string(LastBlockSelection mode);
/// \brief Parses "exact" or "proxy"; throws Error on anything else.
LastBlockSelection parse_last_block_selection(const std::string& name);

/// \brief ProxyAttn configuration. Defaults follow SPEC.md section 2.
struct Config {
  static constexpr std::int64_t kUnbounded = -1;
  static constexpr std::int64_t kAuto = -1;

  int block_size = 128;               ///< b: square tile of mask and kernel, 64 or 128
  int stride = 4;                     ///< s: proxy keeps t % s == 0; must divide b
  double gamma = 0.95;                ///< attention mass each budget covers, (0, 1]
  int num_proxy_heads = 1;            ///< g: must divide num_kv_heads
  std::int64_t min_budget_tokens = 2048;           ///< lower clamp of budgets, rounded up to blocks
  std::int64_t max_budget_tokens = kUnbounded;     ///< upper clamp, >= min_budget_tokens
  std::int64_t dense_below_tokens = kAuto;         ///< kAuto: max(2b, min_budget_tokens)
  bool keep_sink = true;              ///< always select key block 0
  bool keep_diagonal = true;          ///< always select the diagonal block
  LastBlockSelection last_block_selection = LastBlockSelection::kExact;
  double forced_density = 0.0;        ///< benchmarks only: (0, 1], 0 = off
  float scale = 0.0f;                 ///< softmax scale; 0 = 1/sqrt(head_dim)

  /// \brief Throws Error naming the first field out of range (SPEC.md section 6).
  void validate() const;
  /// \brief Sequences of at most this many tokens run dense attention.
  std::int64_t dense_below() const;
  /// \brief min_budget_tokens in blocks, ceil(min / b).
  std::int64_t min_budget_blocks() const;
  /// \brief max_budget_tokens in blocks, or kUnbounded.
  std::int64_t max_budget_blocks() const;
  /// \brief The scale for a head_dim: scale, or 1/sqrt(head_dim) when scale is 0.
  float scale_for(std::int64_t head_dim) const;
};

}  // namespace proxyattn
