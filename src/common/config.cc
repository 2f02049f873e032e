// src/common/config.cc: Config::validate and the derived quantities of SPEC.md section 2.
#include <algorithm>
#include <cmath>

#include "proxyattn/config.h"
#include "proxyattn/types.h"

namespace proxyattn {

const char* to_string(LastBlockSelection mode) {
  return mode == LastBlockSelection::kExact ? "exact" : "proxy";
}

LastBlockSelection parse_last_block_selection(const std::string& name) {
  if (name == "exact") return LastBlockSelection::kExact;
  if (name == "proxy") return LastBlockSelection::kProxy;
  PROXYATTN_FAIL("last_block_selection = '", name, "', expected exact or proxy");
}

void Config::validate() const {
  PROXYATTN_CHECK(block_size == 64 || block_size == 128, "config.block_size = ", block_size,
                  ", expected 64 or 128");
  PROXYATTN_CHECK(stride >= 1 && block_size % stride == 0, "config.stride = ", stride,
                  ", expected a positive divisor of block_size (", block_size, ")");
  PROXYATTN_CHECK(gamma > 0.0 && gamma <= 1.0, "config.gamma = ", gamma, ", expected 0 < gamma <= 1");
  PROXYATTN_CHECK(num_proxy_heads >= 1, "config.num_proxy_heads = ", num_proxy_heads,
                  ", expected >= 1");
  PROXYATTN_CHECK(min_budget_tokens >= 0, "config.min_budget_tokens = ", min_budget_tokens,
                  ", expected >= 0");
  PROXYATTN_CHECK(max_budget_tokens == kUnbounded || max_budget_tokens >= min_budget_tokens,
                  "config.max_budget_tokens = ", max_budget_tokens,
                  ", expected -1 (unbounded) or >= min_budget_tokens (", min_budget_tokens, ")");
  PROXYATTN_CHECK(max_budget_tokens == kUnbounded || max_budget_tokens > 0,
                  "config.max_budget_tokens = ", max_budget_tokens, ", expected > 0");
  PROXYATTN_CHECK(dense_below_tokens == kAuto || dense_below_tokens >= 0,
                  "config.dense_below_tokens = ", dense_below_tokens,
                  ", expected -1 (auto) or >= 0");
  PROXYATTN_CHECK(forced_density == 0.0 || (forced_density > 0.0 && forced_density <= 1.0),
                  "config.forced_density = ", forced_density, ", expected 0 (off) or in (0, 1]");
  PROXYATTN_CHECK(std::isfinite(scale) && scale >= 0.0f, "config.scale = ", scale,
                  ", expected 0 (1/sqrt(head_dim)) or a positive finite number");
}

std::int64_t Config::dense_below() const {
  if (dense_below_tokens != kAuto) return dense_below_tokens;
  return std::max<std::int64_t>(2 * block_size, min_budget_tokens);
}

std::int64_t Config::min_budget_blocks() const {
  return (min_budget_tokens + block_size - 1) / block_size;
}

std::int64_t Config::max_budget_blocks() const {
  if (max_budget_tokens == kUnbounded) return kUnbounded;
  return (max_budget_tokens + block_size - 1) / block_size;
}

float Config::scale_for(std::int64_t head_dim) const {
  return scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

}  // namespace proxyattn
