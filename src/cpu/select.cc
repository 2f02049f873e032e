// src/cpu/select.cc: stage 6 on the CPU. One ranking per (group, query block), nested counts per
// head, and the per-head ranking of the last query block.
#include <algorithm>
#include <numeric>

#include "common/rules.h"
#include "cpu/parallel.h"
#include "cpu/stages.h"

namespace proxyattn::cpu {

void select(const Config& c, const Sequence& s, const float* block_scores, const float* mass,
            Plan& plan, int threads) {
  const PlanLayout& l = plan.layout;
  const std::int64_t g = l.num_proxy_heads, H = l.num_qo_heads, nb = s.num_blocks, i = s.index;
  const std::int64_t tri = nb * (nb + 1) / 2;
  // Group rankings: forced first, then S descending (NaN last), ties to the smaller block.
  parallel_for(g * nb, threads, [&](std::int64_t item) {
    const std::int64_t j = item / nb, m = item % nb;
    const float* S = block_scores + j * tri + m * (m + 1) / 2;
    BlockIndex* order = plan.group_order + l.order_index(i, j, m);
    std::iota(order, order + m + 1, BlockIndex{0});
    std::sort(order, order + m + 1, [&](BlockIndex a, BlockIndex b) {
      return rules::ranks_before(rules::is_forced(m, a, c.keep_sink, c.keep_diagonal), S[a], a,
                                 rules::is_forced(m, b, c.keep_sink, c.keep_diagonal), S[b], b);
    });
  });
  parallel_for(H, threads, [&](std::int64_t h) {
    const std::int32_t budget = plan.budgets[i * H + h];
    for (std::int64_t m = 0; m < nb; ++m) {
      const std::int64_t forced = rules::num_forced(m, c.keep_sink, c.keep_diagonal);
      const std::int64_t count = c.forced_density > 0.0
                                     ? rules::count_from_density(c.forced_density, m, forced)
                                     : rules::count_from_budget(budget, m, forced);
      plan.counts[l.head_index(i, h, m)] = static_cast<std::int32_t>(count);
    }
    const std::int64_t m = nb - 1;
    BlockIndex* last = plan.last_order + l.head_index(i, h, 0);
    if (c.last_block_selection == LastBlockSelection::kExact) {
      const float* a = mass + h * nb;  // log(a_h): the order of a_h, without float underflow
      std::iota(last, last + nb, BlockIndex{0});
      std::sort(last, last + nb, [&](BlockIndex x, BlockIndex y) {
        return rules::ranks_before(rules::is_forced(m, x, c.keep_sink, c.keep_diagonal), a[x], x,
                                   rules::is_forced(m, y, c.keep_sink, c.keep_diagonal), a[y], y);
      });
    } else {
      const BlockIndex* row = plan.group_order + l.order_index(i, l.group_of_head(h), m);
      std::copy(row, row + nb, last);
    }
  });
}

}  // namespace proxyattn::cpu
