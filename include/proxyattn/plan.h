// proxyattn/plan.h: the block-sparse plan (docs/SPEC.md stage 6) and where it lives in the workspace.
//
// For sequence i with nb_i = ceil(N_i / b) blocks, group j and query block m, the plan stores
//   group_order : the m + 1 causal key blocks of row m, best first (one ranking per group);
//   last_order  : per query head, the ranking of the last query block (m = nb_i - 1);
//   counts      : per query head and row, how many blocks of the row's ranking the head attends.
// Query block m of head h attends the first counts[h][m] entries of row_order(i, h, m), which is
// last_order for the last block and the group's order otherwise. Heads of a group therefore
// select nested prefixes of one ranking, and one CTA can serve them all.
// Sequences that run dense have identity orders and full counts.
#pragma once

#include <cstdint>
#include <vector>

#include "proxyattn/config.h"
#include "proxyattn/problem.h"
#include "proxyattn/types.h"

namespace proxyattn {

using BlockIndex = std::int16_t;  ///< key block index; nb <= kMaxBlocks
constexpr std::int64_t kMaxBlocks = 32767;

/// \brief Where each sequence's rows live in the plan's arrays, derived on the host from shapes and
/// config alone.
struct PlanLayout {
  std::int64_t batch = 0, num_qo_heads = 0, num_kv_heads = 0, num_proxy_heads = 0, block_size = 0;
  std::int64_t stride = 0, head_dim = 0;
  std::vector<std::int32_t> cu_seqlens;    // [batch + 1]
  std::vector<std::int64_t> num_blocks;    // [batch]      nb_i
  std::vector<std::int64_t> order_offset;  // [batch + 1]  elements, start of seq i in group_order
  std::vector<std::int64_t> head_offset;   // [batch + 1]  elements, start of seq i in counts
  std::vector<std::uint8_t> is_dense;      // [batch]      1 when seq i runs dense

  /// Query heads per proxy group: group j holds query heads [j * heads_per_group(), ...).
  std::int64_t heads_per_group() const { return num_qo_heads / num_proxy_heads; }
  static std::int64_t tri(std::int64_t nb) { return nb * (nb + 1) / 2; }
  /// Element index of row m of (seq, group) in group_order.
  std::int64_t order_index(std::int64_t seq, std::int64_t group, std::int64_t m) const {
    return order_offset[seq] + group * tri(num_blocks[seq]) + m * (m + 1) / 2;
  }
  /// Element index of (seq, head, m) in counts, or of (seq, head, n) in last_order.
  std::int64_t head_index(std::int64_t seq, std::int64_t head, std::int64_t m) const {
    return head_offset[seq] + head * num_blocks[seq] + m;
  }
  std::int64_t group_of_head(std::int64_t head) const { return head / heads_per_group(); }
};

/// \brief A plan: views into the workspace plus the host-side layout. A copy shares the arrays
/// (they stay in the workspace) and copies the layout's per-sequence vectors (O(batch)).
struct Plan {
  PlanLayout layout;
  Device device = Device::kCPU;
  int device_id = 0;
  float scale = 0.0f;  ///< softmax scale of the plan's attention; 0 = 1/sqrt(head_dim)

  BlockIndex* group_order = nullptr;  // [sum_i g * nb_i (nb_i + 1) / 2]
  BlockIndex* last_order = nullptr;   // [sum_i num_qo_heads * nb_i]
  std::int32_t* counts = nullptr;     // [sum_i num_qo_heads * nb_i]
  std::int32_t* budgets = nullptr;    // [batch, num_qo_heads]  n_h in blocks
  float* density = nullptr;           // [batch, num_qo_heads]
  std::int32_t* flags = nullptr;      // [4]  device-side error flags (0 = ok)

  /// \brief The ranking that head h walks in query block m of sequence seq (host plans only).
  const BlockIndex* row_order(std::int64_t seq, std::int64_t head, std::int64_t m) const;
  /// \brief Selected blocks as 0/1 bytes, [sum_i num_qo_heads * nb_i * nb_i], row-major per
  /// (seq, head, m, n). Copies device plans to the host (synchronizes). For tests and tools.
  std::vector<std::uint8_t> to_dense() const;
  /// \brief Budgets and densities copied to the host (synchronizes on CUDA).
  struct Stats {
    std::vector<std::int32_t> budgets;  // [batch, num_qo_heads]
    std::vector<float> density;         // [batch, num_qo_heads]
    std::vector<double> seq_density;    // [batch]  mean over heads
    double density_weighted = 0.0;      ///< mean over (seq, head) weighted by causal blocks
  };
  Stats stats() const;
  /// \brief Throws Error when the CUDA attention found an out-of-range count (flag 1) or block
  /// index (flag 2) in this plan: such rows were clamped or skipped, never read out of bounds.
  /// Reads the flags back (synchronizes on CUDA). Host plans are checked before attend runs.
  void check_flags() const;
};

/// \brief A host copy of a plan's arrays and a host Plan viewing them (device plans are copied
/// with a synchronizing copy). Move-only: `plan` views this object's own vectors, whose storage a
/// move keeps and a copy would not.
struct HostPlan {
  HostPlan() = default;
  HostPlan(HostPlan&&) = default;
  HostPlan& operator=(HostPlan&&) = default;
  HostPlan(const HostPlan&) = delete;
  HostPlan& operator=(const HostPlan&) = delete;

  std::vector<BlockIndex> group_order, last_order;
  std::vector<std::int32_t> counts, budgets;
  std::vector<float> density;
  Plan plan;
};
HostPlan copy_to_host(const Plan& plan);

/// \brief Builds a plan from a user's block mask, [sum_i num_qo_heads * nb_i * nb_i] bytes in the
/// layout of to_dense() (entries above the diagonal are ignored). Within each group and query
/// block (but the last) the heads' selections must be nested; the last block is per head.
/// Throws Error naming the first (seq, group, block) that is not nested. Host memory only;
/// copy_plan() (proxyattn/device.h) takes it to a CUDA workspace.
Plan plan_from_block_mask(const ProblemShape& shape, int block_size, int num_proxy_heads,
                          const std::uint8_t* mask, Workspace workspace, float scale = 0.0f);

}  // namespace proxyattn
