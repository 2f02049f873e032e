// src/common/workspace.h: where the plan and the scratch of every stage live in the caller's
// workspace, and binding that layout to memory (host-only).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "proxyattn/config.h"
#include "proxyattn/plan.h"

namespace proxyattn {

/// \brief The plan's layout plus the byte offset of every plan array and scratch buffer inside the
/// workspace. Every array is 256-byte aligned.
struct WorkspaceLayout : PlanLayout {
  std::vector<std::int64_t> sample_offset;  // [batch + 1]  rows, start of seq i in proxy buffers

  // Byte offsets into the workspace.
  std::size_t group_order_bytes = 0, last_order_bytes = 0, counts_bytes = 0, budgets_bytes = 0,
              density_bytes = 0, flags_bytes = 0;                                    // the plan
  std::size_t block_scores_bytes = 0, mass_bytes = 0, proxy_q_bytes = 0, proxy_k_bytes = 0;  // scratch
  /// CUDA stage 5 scratch: per-(head, key block, last row) softmax partials, float2, sized for the
  /// largest non-dense sequence and reused by each in turn.
  std::size_t mass_partials_bytes = 0;
  std::size_t total_bytes = 0;
};

/// \brief Lays out the workspace for a shape and config (validated by the caller).
WorkspaceLayout make_workspace_layout(const ProblemShape& shape, const Config& config);

/// \brief A Plan whose arrays point into workspace at layout's offsets.
Plan bind_plan(const WorkspaceLayout& layout, Workspace workspace, float scale);

/// \brief Typed pointer at a byte offset of the workspace.
template <typename T>
T* workspace_at(const Workspace& workspace, std::size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(workspace.data) + offset);
}

/// \brief density[i][h] = selected causal blocks / tri(nb_i), from a host plan's counts.
void compute_density(const Plan& plan);

/// \brief Checks that a plan's layout is self-consistent (sizes, heads, per-sequence blocks and
/// offsets as make_workspace_layout() derives them). Throws Error otherwise.
void check_plan_layout(const PlanLayout& layout);

/// \brief Checks a host plan before attention reads it: its layout (check_plan_layout), every
/// count in [0, m + 1] and the first `count` entries of each row distinct blocks in [0, m].
/// Throws Error naming the first bad row.
void validate_host_plan(const Plan& plan);

}  // namespace proxyattn
