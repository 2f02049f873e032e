// src/common/workspace.h: binding a WorkspaceLayout to memory (host-only).
#pragma once

#include <cstdint>

#include "proxyattn/plan.h"

namespace proxyattn {

/// \brief A Plan whose arrays point into workspace at layout's offsets.
Plan bind_plan(const WorkspaceLayout& layout, Workspace workspace, float scale);

/// \brief Typed pointer at a byte offset of the workspace.
template <typename T>
T* workspace_at(const Workspace& workspace, std::size_t offset) {
  return reinterpret_cast<T*>(static_cast<char*>(workspace.data) + offset);
}

/// \brief density[i][h] = selected causal blocks / tri(nb_i), from a host plan's counts.
void compute_density(const Plan& plan);

/// \brief Checks a host plan before attention reads it: every count in [0, m + 1] and the first
/// `count` entries of each row distinct blocks in [0, m]. Throws Error naming the first bad row.
void validate_host_plan(const Plan& plan);

}  // namespace proxyattn
