// proxyattn/config.h: the knobs of docs/SPEC.md section 2, with their defaults.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace proxyattn {

/// \brief How the last query block of each head is ranked (docs/SPEC.md stage 6).
enum class LastBlockSelection : int {
  kExact = 0,  ///< by the head's own exact last-block mass a_h [deviation, default]
  kProxy = 1,  ///< by the group's proxy block scores, as the paper does
};

const char* to_string(LastBlockSelection mode);
/// \brief Parses "exact" or "proxy"; throws Error on anything else.
LastBlockSelection parse_last_block_selection(const std::string& name);

/// \brief ProxyAttn configuration. Defaults follow docs/SPEC.md section 2.
struct Config {
  /// max_budget_tokens that clamps nothing.
  static constexpr std::int64_t kUnbounded = std::numeric_limits<std::int64_t>::max();
  /// dense_below_tokens derived from the others: max(2 b, min_budget_tokens).
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

  /// \brief Throws Error naming the first field out of range (docs/SPEC.md section 6).
  void validate() const;
  /// \brief Sequences of at most this many tokens run dense attention.
  std::int64_t dense_below() const;
  /// \brief min_budget_tokens in blocks, ceil(min / b).
  std::int64_t min_budget_blocks() const;
  /// \brief max_budget_tokens in blocks, ceil(max / b), or kUnbounded.
  std::int64_t max_budget_blocks() const;
  /// \brief The scale for a head_dim: scale, or 1/sqrt(head_dim) when scale is 0.
  float scale_for(std::int64_t head_dim) const;
};

/// \brief One field of Config as the command line and Python see it. config_fields() is the one
/// list of fields that the CLI's flags, the Python binding and the Python dataclass follow; the
/// defaults are those of a default-constructed Config, and validate() holds the ranges.
struct ConfigField {
  const char* name;   ///< the C++ member and Python keyword, e.g. "min_budget_tokens"
  const char* flag;   ///< the command-line flag, e.g. "--min-budget"
  const char* type;   ///< "int", "float", "bool" or "choice" (the value's Python type)
  const char* unset;  ///< the word for the sentinel value ("none", "auto", "off", "default"), or ""
  const char* help;   ///< one line: meaning, unit and range
};

/// \brief Every field of Config, in declaration order.
const std::vector<ConfigField>& config_fields();

/// \brief Sets the field `name` from text: a whole number or word in range (the field's `unset`
/// word selects its sentinel). Throws Error naming the field, the text and what was expected;
/// config is unchanged then. Range rules that involve other fields stay with validate().
void set_config_field(Config& config, const std::string& name, const std::string& text);

/// \brief The field's value as text that set_config_field() reads back to the same value (the
/// `unset` word for a sentinel).
std::string get_config_field(const Config& config, const std::string& name);

}  // namespace proxyattn
