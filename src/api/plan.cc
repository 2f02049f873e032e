// src/api/plan.cc: the Plan methods that may read device memory (copies go through the CUDA
// backend, which synchronizes).
#include <algorithm>

#include "common/check.h"
#include "common/workspace.h"
#include "cuda/backend.h"
#include "proxyattn/plan.h"

namespace proxyattn {

HostPlan copy_to_host(const Plan& plan) {
  const PlanLayout& l = plan.layout;
  check_plan_layout(l);  // it sizes the copies
  HostPlan h;
  h.group_order.resize(l.order_offset[l.batch]);
  h.last_order.resize(l.head_offset[l.batch]);
  h.counts.resize(l.head_offset[l.batch]);
  h.budgets.resize(l.batch * l.num_qo_heads);
  h.density.resize(l.batch * l.num_qo_heads);
  const Runtime runtime;
  auto copy = [&](auto& dst, const auto* src) {
    if (dst.empty()) return;
    if (plan.device == Device::kCUDA) {
      cuda::copy_to_host(dst.data(), src, dst.size() * sizeof(dst[0]), runtime);
    } else {
      std::copy(src, src + dst.size(), dst.begin());
    }
  };
  copy(h.group_order, plan.group_order);
  copy(h.last_order, plan.last_order);
  copy(h.counts, plan.counts);
  copy(h.budgets, plan.budgets);
  copy(h.density, plan.density);
  h.plan = plan;
  h.plan.device = Device::kCPU;
  h.plan.group_order = h.group_order.data();
  h.plan.last_order = h.last_order.data();
  h.plan.counts = h.counts.data();
  h.plan.budgets = h.budgets.data();
  h.plan.density = h.density.data();
  h.plan.flags = nullptr;
  return h;
}

std::vector<std::uint8_t> Plan::to_dense() const {
  if (device == Device::kCUDA) return copy_to_host(*this).plan.to_dense();
  validate_host_plan(*this);  // the layout sizes the mask, the counts and orders index it
  const PlanLayout& l = layout;
  std::size_t total = 0;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    total += static_cast<std::size_t>(l.num_qo_heads * l.num_blocks[i] * l.num_blocks[i]);
  }
  std::vector<std::uint8_t> mask(total, 0);
  std::size_t base = 0;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t nb = l.num_blocks[i];
    for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
      for (std::int64_t m = 0; m < nb; ++m) {
        const BlockIndex* order = row_order(i, h, m);
        const std::int32_t count = counts[l.head_index(i, h, m)];
        for (std::int32_t c = 0; c < count; ++c) {
          mask[base + static_cast<std::size_t>((h * nb + m) * nb + order[c])] = 1;
        }
      }
    }
    base += static_cast<std::size_t>(l.num_qo_heads * nb * nb);
  }
  return mask;
}

void Plan::check_flags() const {
  std::int32_t host[4] = {0, 0, 0, 0};
  if (flags == nullptr) return;
  if (device == Device::kCUDA) {
    cuda::copy_to_host(host, flags, sizeof(host), Runtime{});
  } else {
    std::copy(flags, flags + 4, host);
  }
  PROXYATTN_CHECK(host[0] == 0, "plan.flags[0] = ", host[0], ": attention found ",
                  (host[0] & 1) ? "a count out of range " : "",
                  (host[0] & 2) ? "a block index out of range " : "",
                  "in the plan, expected a plan from plan() or plan_from_block_mask()");
}

Plan::Stats Plan::stats() const {
  if (device == Device::kCUDA) return copy_to_host(*this).plan.stats();
  const PlanLayout& l = layout;
  check_plan_layout(l);
  Stats s;
  s.budgets.assign(budgets, budgets + l.batch * l.num_qo_heads);
  s.density.assign(density, density + l.batch * l.num_qo_heads);
  s.seq_density.assign(l.batch, 0.0);
  double selected = 0.0, causal = 0.0;
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const double tri = static_cast<double>(PlanLayout::tri(l.num_blocks[i]));
    for (std::int64_t h = 0; h < l.num_qo_heads; ++h) {
      const double d = s.density[i * l.num_qo_heads + h];
      s.seq_density[i] += d / static_cast<double>(l.num_qo_heads);
      selected += d * tri;
      causal += tri;
    }
  }
  s.density_weighted = causal > 0.0 ? selected / causal : 1.0;
  return s;
}

}  // namespace proxyattn
