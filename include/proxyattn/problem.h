// proxyattn/problem.h: the sizes of one packed causal prefill, enough to size a workspace
// without reading any tensor data.
#pragma once

#include <cstdint>
#include <vector>

#include "proxyattn/types.h"

namespace proxyattn {

/// \brief Sizes of a packed prefill, enough to size the workspace without touching data.
struct ProblemShape {
  std::int64_t total_tokens = 0;
  std::int64_t num_qo_heads = 0;
  std::int64_t num_kv_heads = 0;
  std::int64_t head_dim = 0;
  std::vector<std::int32_t> cu_seqlens;  // [batch + 1], host

  std::int64_t batch() const { return static_cast<std::int64_t>(cu_seqlens.size()) - 1; }
  std::int64_t seq_len(std::int64_t i) const { return cu_seqlens[i + 1] - cu_seqlens[i]; }
  std::int64_t max_seqlen() const;
  std::int64_t group_size() const { return num_qo_heads / num_kv_heads; }
};

}  // namespace proxyattn
