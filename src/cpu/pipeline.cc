// src/cpu/pipeline.cc: cpu::plan, the stages of one sequence after another (each stage
// parallel inside). Dense-fallback sequences get identity orders and full counts.
#include <algorithm>
#include <numeric>

#include "common/workspace.h"
#include "cpu/backend.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

namespace {

void plan_dense_sequence(const Sequence& s, Plan& plan) {
  const PlanLayout& l = plan.layout;
  const std::int64_t nb = s.num_blocks;
  for (std::int64_t j = 0; j < l.num_proxy_heads; ++j) {
    for (std::int64_t m = 0; m < nb; ++m) {
      BlockIndex* order = plan.group_order + l.order_index(s.index, j, m);
      std::iota(order, order + m + 1, BlockIndex{0});
    }
  }
  for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
    BlockIndex* last = plan.last_order + l.head_index(s.index, h, 0);
    std::iota(last, last + nb, BlockIndex{0});
    for (std::int64_t m = 0; m < nb; ++m) {
      plan.counts[l.head_index(s.index, h, m)] = static_cast<std::int32_t>(m + 1);
    }
    plan.budgets[s.index * l.num_qo_heads + h] = static_cast<std::int32_t>(nb);
  }
}

}  // namespace

void plan(const Problem& p, const Config& c, Plan& plan, Workspace workspace,
          const Runtime& runtime) {
  const WorkspaceLayout l = make_workspace_layout(p.shape, c);
  const int threads = resolve_threads(runtime.num_threads);
  float* block_scores = workspace_at<float>(workspace, l.block_scores_bytes);
  float* mass = workspace_at<float>(workspace, l.mass_bytes);
  float* proxy_q = workspace_at<float>(workspace, l.proxy_q_bytes);
  float* proxy_k = workspace_at<float>(workspace, l.proxy_k_bytes);
  std::fill(plan.flags, plan.flags + 4, 0);
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const Sequence s{i, l.cu_seqlens[i], l.cu_seqlens[i + 1] - l.cu_seqlens[i], l.num_blocks[i]};
    if (s.num_blocks == 0) {  // an empty sequence selects nothing
      std::fill(plan.budgets + i * l.num_qo_heads, plan.budgets + (i + 1) * l.num_qo_heads, 0);
      continue;
    }
    if (l.is_dense[i]) {
      plan_dense_sequence(s, plan);
      continue;
    }
    float* seq_q = proxy_q + l.sample_offset[i] * l.num_proxy_heads * l.head_dim;
    float* seq_k = proxy_k + l.sample_offset[i] * l.num_proxy_heads * l.head_dim;
    float* seq_scores = block_scores + l.order_offset[i];
    float* seq_mass = mass + l.head_offset[i];
    pool_proxy(p, c, s, seq_q, seq_k, threads);
    block_scores_stage(p, c, s, seq_q, seq_k, seq_scores, threads);
    budgets(p, c, s, seq_mass, plan.budgets + i * l.num_qo_heads, threads);
    select(c, s, seq_scores, seq_mass, plan, threads);
  }
  compute_density(plan);
}

}  // namespace proxyattn::cpu
