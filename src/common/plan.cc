// src/common/plan.cc: workspace layout, plan views, host plan checks and user-built plans.
#include <algorithm>
#include <numeric>

#include "common/check.h"
#include "common/numeric.h"
#include "common/validate.h"
#include "common/workspace.h"
#include "proxyattn/plan.h"

namespace proxyattn {

namespace {

constexpr std::int64_t kAlign = 256;

}  // namespace

WorkspaceLayout make_workspace_layout(const ProblemShape& shape, const Config& config) {
  // Every size is computed with overflow checks: heads, head_dim and groups are free int64s, and
  // a size that wrapped would make a small workspace pass check_workspace().
  static constexpr const char* kWhat = "workspace size";
  auto mul = [](std::int64_t a, std::int64_t b) { return checked_mul(a, b, kWhat); };
  auto add = [](std::int64_t a, std::int64_t b) { return checked_add(a, b, kWhat); };
  WorkspaceLayout l;
  l.batch = shape.batch();
  l.num_qo_heads = shape.num_qo_heads;
  l.num_kv_heads = shape.num_kv_heads;
  l.num_proxy_heads = config.num_proxy_heads;
  l.block_size = config.block_size;
  l.stride = config.stride;
  l.head_dim = shape.head_dim;
  l.cu_seqlens = shape.cu_seqlens;
  l.num_blocks.resize(l.batch);
  l.is_dense.resize(l.batch);
  l.order_offset.assign(l.batch + 1, 0);
  l.head_offset.assign(l.batch + 1, 0);
  l.sample_offset.assign(l.batch + 1, 0);
  std::int64_t partials = 0;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t n = shape.seq_len(i);
    const std::int64_t nb = (n + l.block_size - 1) / l.block_size;
    l.num_blocks[i] = nb;
    l.is_dense[i] = n <= config.dense_below() ? 1 : 0;
    l.order_offset[i + 1] = add(l.order_offset[i], mul(l.num_proxy_heads, PlanLayout::tri(nb)));
    l.head_offset[i + 1] = add(l.head_offset[i], mul(l.num_qo_heads, nb));
    const std::int64_t samples = l.is_dense[i] ? 0 : (n + l.stride - 1) / l.stride;
    l.sample_offset[i + 1] = l.sample_offset[i] + samples;
    if (!l.is_dense[i]) {
      const std::int64_t rows = std::min<std::int64_t>(l.block_size, n);
      partials = std::max(partials, mul(mul(l.num_qo_heads, nb), rows));
    }
  }
  const std::int64_t orders = l.order_offset[l.batch];
  const std::int64_t heads = l.head_offset[l.batch];
  const std::int64_t per_seq_head = mul(l.batch, l.num_qo_heads);
  const std::int64_t samples = l.sample_offset[l.batch];
  // Appends an array of count elements of `size` bytes, 256-byte aligned; returns its offset.
  std::int64_t cursor = 0;
  auto take = [&](std::int64_t count, std::size_t size) {
    const std::int64_t offset = cursor;
    const std::int64_t end = add(cursor, mul(count, static_cast<std::int64_t>(size)));
    cursor = mul(add(end, kAlign - 1) / kAlign, kAlign);
    return static_cast<std::size_t>(offset);
  };
  l.group_order_bytes = take(orders, sizeof(BlockIndex));
  l.last_order_bytes = take(heads, sizeof(BlockIndex));
  l.counts_bytes = take(heads, sizeof(std::int32_t));
  l.budgets_bytes = take(per_seq_head, sizeof(std::int32_t));
  l.density_bytes = take(per_seq_head, sizeof(float));
  l.flags_bytes = take(4, sizeof(std::int32_t));
  l.block_scores_bytes = take(orders, sizeof(float));
  l.mass_bytes = take(heads, sizeof(float));
  const std::int64_t proxy = mul(mul(samples, l.num_proxy_heads), l.head_dim);
  l.proxy_q_bytes = take(proxy, sizeof(float));
  l.proxy_k_bytes = take(proxy, sizeof(float));
  l.mass_partials_bytes = take(mul(partials, 2), sizeof(float));
  l.total_bytes = static_cast<std::size_t>(cursor);
  return l;
}

Plan bind_plan(const WorkspaceLayout& layout, Workspace workspace, float scale) {
  Plan p;
  p.layout = layout;
  p.device = workspace.device;
  p.device_id = workspace.device_id;
  p.scale = scale;
  p.group_order = workspace_at<BlockIndex>(workspace, layout.group_order_bytes);
  p.last_order = workspace_at<BlockIndex>(workspace, layout.last_order_bytes);
  p.counts = workspace_at<std::int32_t>(workspace, layout.counts_bytes);
  p.budgets = workspace_at<std::int32_t>(workspace, layout.budgets_bytes);
  p.density = workspace_at<float>(workspace, layout.density_bytes);
  p.flags = workspace_at<std::int32_t>(workspace, layout.flags_bytes);
  return p;
}

const BlockIndex* Plan::row_order(std::int64_t seq, std::int64_t head, std::int64_t m) const {
  const PlanLayout& l = layout;
  if (m == l.num_blocks[seq] - 1) return last_order + l.head_index(seq, head, 0);
  return group_order + l.order_index(seq, l.group_of_head(head), m);
}

void compute_density(const Plan& plan) {
  const PlanLayout& l = plan.layout;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t nb = l.num_blocks[i];
    for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
      std::int64_t selected = 0;
      for (std::int64_t m = 0; m < nb; ++m) selected += plan.counts[l.head_index(i, h, m)];
      plan.density[i * l.num_qo_heads + h] =
          nb == 0 ? 1.0f : static_cast<float>(static_cast<double>(selected) / PlanLayout::tri(nb));
    }
  }
}

void check_plan_layout(const PlanLayout& l) {
  // Every field that sizes or indexes the plan's arrays, against what make_workspace_layout()
  // derives from the rest: a plan whose layout was edited, or copied from another problem, never
  // sends a read or write outside its arrays.
  constexpr const char* kExpected = ", expected a plan from plan() or plan_from_block_mask()";
  PROXYATTN_CHECK(l.block_size == 64 || l.block_size == 128, "plan.layout.block_size = ",
                  l.block_size, kExpected, " (64 or 128)");
  PROXYATTN_CHECK(l.num_qo_heads >= 1 && l.num_kv_heads >= 1 && l.num_proxy_heads >= 1 &&
                      l.num_qo_heads % l.num_kv_heads == 0 &&
                      l.num_kv_heads % l.num_proxy_heads == 0,
                  "plan.layout heads = ", l.num_qo_heads, "/", l.num_kv_heads, "/",
                  l.num_proxy_heads, kExpected, " (query heads a multiple of KV heads, a multiple "
                  "of groups)");
  const auto size = [](const auto& v) { return static_cast<std::int64_t>(v.size()); };
  PROXYATTN_CHECK(l.batch >= 1 && size(l.cu_seqlens) == l.batch + 1 &&
                      size(l.num_blocks) == l.batch && size(l.is_dense) == l.batch &&
                      size(l.order_offset) == l.batch + 1 && size(l.head_offset) == l.batch + 1,
                  "plan.layout.batch = ", l.batch, " with ", size(l.cu_seqlens), " cu_seqlens, ",
                  size(l.num_blocks), " num_blocks, ", size(l.order_offset), " order_offset, ",
                  size(l.head_offset), " head_offset", kExpected);
  PROXYATTN_CHECK(l.cu_seqlens[0] == 0 && l.order_offset[0] == 0 && l.head_offset[0] == 0,
                  "plan.layout starts at cu_seqlens ", l.cu_seqlens[0], ", order_offset ",
                  l.order_offset[0], ", head_offset ", l.head_offset[0], kExpected, " (all 0)");
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t n = static_cast<std::int64_t>(l.cu_seqlens[i + 1]) - l.cu_seqlens[i];
    const std::int64_t nb = n < 0 ? -1 : (n + l.block_size - 1) / l.block_size;
    PROXYATTN_CHECK(n >= 0 && l.num_blocks[i] == nb && nb <= kMaxBlocks,
                    "plan.layout of sequence ", i, ": ", n, " tokens in ", l.num_blocks[i],
                    " blocks", kExpected);
    std::int64_t orders = 0, heads = 0, order_end = 0, head_end = 0;
    const bool ok = !__builtin_mul_overflow(l.num_proxy_heads, PlanLayout::tri(nb), &orders) &&
                    !__builtin_mul_overflow(l.num_qo_heads, nb, &heads) &&
                    !__builtin_add_overflow(l.order_offset[i], orders, &order_end) &&
                    !__builtin_add_overflow(l.head_offset[i], heads, &head_end);
    PROXYATTN_CHECK(ok && l.order_offset[i + 1] == order_end && l.head_offset[i + 1] == head_end,
                    "plan.layout offsets of sequence ", i, " = ", l.order_offset[i + 1], ", ",
                    l.head_offset[i + 1], kExpected);
  }
}

void validate_host_plan(const Plan& plan) {
  const PlanLayout& l = plan.layout;
  check_plan_layout(l);
  std::vector<std::int64_t> seen;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t nb = l.num_blocks[i];
    seen.assign(nb, -1);
    for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
      for (std::int64_t m = 0; m < nb; ++m) {
        const std::int32_t count = plan.counts[l.head_index(i, h, m)];
        PROXYATTN_CHECK(count >= 0 && count <= m + 1, "plan.counts of sequence ", i, ", head ", h,
                        ", query block ", m, " = ", count, ", expected 0 .. ", m + 1);
        const BlockIndex* order = plan.row_order(i, h, m);
        const std::int64_t row = (h * nb + m);
        for (std::int32_t c = 0; c < count; ++c) {
          const std::int64_t n = order[c];
          PROXYATTN_CHECK(n >= 0 && n <= m && seen[n] != row, "plan order of sequence ", i,
                          ", head ", h, ", query block ", m, " entry ", c, " = ", n,
                          ", expected distinct key blocks in 0 .. ", m);
          seen[n] = row;
        }
      }
    }
  }
}

Plan plan_from_block_mask(const ProblemShape& shape, int block_size, int num_proxy_heads,
                          const std::uint8_t* mask, Workspace workspace, float scale) {
  Config config;
  config.block_size = block_size;
  config.num_proxy_heads = num_proxy_heads;
  config.min_budget_tokens = 0;
  config.dense_below_tokens = 0;
  check_config_fits(config, shape);
  PROXYATTN_CHECK(workspace.device == Device::kCPU, "workspace.device = ",
                  to_string(workspace.device), ", expected cpu (build the plan on the host)");
  const WorkspaceLayout l = make_workspace_layout(shape, config);
  check_workspace(workspace, l.total_bytes, Device::kCPU, workspace.device_id);
  PROXYATTN_CHECK(mask != nullptr, "mask = nullptr");
  // Validate everything before writing: find each row's group ranking and check nesting.
  const std::int64_t heads_per_group = l.heads_per_group();
  std::vector<BlockIndex> group_order(l.order_offset[l.batch]);
  std::size_t base = 0;
  std::vector<std::size_t> seq_base(l.batch);
  for (std::int64_t i = 0; i < l.batch; ++i) {
    seq_base[i] = base;
    const std::int64_t nb = l.num_blocks[i];
    auto at = [&](std::int64_t h, std::int64_t m, std::int64_t n) {
      return mask[base + static_cast<std::size_t>((h * nb + m) * nb + n)] != 0;
    };
    std::vector<int> votes(nb);
    for (std::int64_t j = 0; j < l.num_proxy_heads; ++j) {
      for (std::int64_t m = 0; m < nb; ++m) {
        BlockIndex* order = group_order.data() + l.order_index(i, j, m);
        for (std::int64_t n = 0; n <= m; ++n) {
          votes[n] = 0;
          for (std::int64_t h = j * heads_per_group; h < (j + 1) * heads_per_group; ++h) {
            votes[n] += at(h, m, n) ? 1 : 0;
          }
          order[n] = static_cast<BlockIndex>(n);
        }
        std::stable_sort(order, order + m + 1, [&](BlockIndex a, BlockIndex b) {
          return votes[a] > votes[b];
        });
        if (m == nb - 1) continue;  // the last block has per-head orders
        for (std::int64_t h = j * heads_per_group; h < (j + 1) * heads_per_group; ++h) {
          std::int64_t count = 0;
          for (std::int64_t n = 0; n <= m; ++n) count += at(h, m, n) ? 1 : 0;
          for (std::int64_t c = 0; c < count; ++c) {
            PROXYATTN_CHECK(at(h, m, order[c]), "mask of sequence ", i, ", group ", j,
                            ", query block ", m, " is not nested: head ", h,
                            " does not select a block that a head with fewer blocks selects "
                            "(heads of a group must select nested sets)");
          }
        }
      }
    }
    base += static_cast<std::size_t>(l.num_qo_heads * nb * nb);
  }
  Plan plan = bind_plan(l, workspace, scale);
  std::fill(plan.budgets, plan.budgets + l.batch * l.num_qo_heads, 0);
  std::copy(group_order.begin(), group_order.end(), plan.group_order);
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t nb = l.num_blocks[i];
    for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
      const std::uint8_t* rows = mask + seq_base[i] + static_cast<std::size_t>(h * nb * nb);
      for (std::int64_t m = 0; m < nb; ++m) {
        std::int32_t count = 0;
        for (std::int64_t n = 0; n <= m; ++n) count += rows[m * nb + n] ? 1 : 0;
        plan.counts[l.head_index(i, h, m)] = count;
      }
      if (nb == 0) continue;
      // Last block: this head's selected blocks first, then the rest, each ascending.
      BlockIndex* last = plan.last_order + l.head_index(i, h, 0);
      const std::uint8_t* row = rows + (nb - 1) * nb;
      std::int64_t c = 0;
      for (std::int64_t n = 0; n < nb; ++n) if (row[n]) last[c++] = static_cast<BlockIndex>(n);
      for (std::int64_t n = 0; n < nb; ++n) if (!row[n]) last[c++] = static_cast<BlockIndex>(n);
      plan.budgets[i * l.num_qo_heads + h] = plan.counts[l.head_index(i, h, nb - 1)];
    }
  }
  std::fill(plan.flags, plan.flags + 4, 0);
  compute_density(plan);
  return plan;
}

}  // namespace proxyattn
