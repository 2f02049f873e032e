// tools/proxyattn/check.cc: `proxyattn check`, the backend against the double reference on the
// same inputs: plan conformance and output conformance (docs/SPEC.md section 4). The output tolerance
// is docs/STYLE.md's: 2x the error of a same-precision naive implementation, plus noise.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>

#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/reference.h"
#include "tools/proxyattn/cli.h"

namespace proxyattn::cli {

namespace {

reference::Operands with_output(reference::Operands operands, const TensorView& out,
                                const TensorView& lse) {
  operands.out = out;
  operands.lse = lse;
  return operands;
}

}  // namespace

int run_check(const CommonOptions& o) {
  const Config base = o.config();
  Inputs in;
  load_inputs(o, in);
  const Runtime runtime = o.runtime();
  const CuSeqlens seqlens = in.host.seqlens();
  std::vector<LastBlockSelection> modes{base.last_block_selection};
  if (!o.last_block_given) modes = {LastBlockSelection::kExact, LastBlockSelection::kProxy};

  bool plan_ok = true, output_ok = true;
  double rel_error = 0.0, max_abs = 0.0;
  nlohmann::json cases = nlohmann::json::array();
  bool header_printed = false;  // printed after the first run: a rejected run prints nothing
  for (LastBlockSelection mode : modes) {
    Config config = base;
    config.last_block_selection = mode;
    RunOutput out(in);
    const ProblemShape shape = problem_shape(in.q(), in.k(), seqlens);
    Buffer ws(workspace_size(shape, config), in.device);
    progress(std::string("backend prefill, last block ") + to_string(mode));
    const Plan p = prefill(in.q(), in.k(), in.v(), seqlens, config, ws.workspace(), out.o_view,
                           &out.lse_view, runtime);
    const HostPlan hp = copy_to_host(p);
    // The reference plans on the same (host) inputs, then attends over the backend's own plan.
    const TensorView q = in.host.q_view(), k = in.host.k_view(), v = in.host.v_view();
    progress("reference plan");
    reference::Operands host_problem;
    host_problem.q = q;
    host_problem.k = k;
    host_problem.v = v;
    host_problem.cu_seqlens = seqlens;
    host_problem.scale = config.scale;
    const std::vector<reference::SeqPlan> ref = reference::plan(host_problem, config);
    const PlanConformance conf = check_plan(ref, hp.plan, config);
    progress("reference attention over the backend's plan");
    const std::vector<std::uint8_t> mask = hp.plan.to_dense();
    std::vector<double> out_ref, lse_ref;
    reference::attend(host_problem, config.block_size, mask, out_ref, lse_ref);
    progress("same-precision naive attention (the tolerance's yardstick)");
    std::vector<std::uint8_t> naive;
    reference::naive_attend(host_problem, config.block_size, mask, naive);
    const TensorView naive_view = TensorView::contiguous(naive.data(), in.host.spec.dtype,
                                                         {in.host.total_tokens,
                                                          in.host.spec.num_qo_heads,
                                                          in.host.spec.head_dim});
    const OutputError naive_err = compare_output(
        with_output(host_problem, naive_view, TensorView{}), out_ref, lse_ref);
    progress("");
    const std::vector<std::uint8_t> o_host = out.o.to_host();
    std::vector<float> lse_host = to_host_vector<float>(out.lse);
    const TensorView o_view = TensorView::contiguous(const_cast<std::uint8_t*>(o_host.data()),
                                                     in.host.spec.dtype, {in.host.total_tokens,
                                                     in.host.spec.num_qo_heads, in.host.spec.head_dim});
    const TensorView lse_view = TensorView::contiguous(lse_host.data(), DType::kFloat32,
                                                       {in.host.spec.num_qo_heads, in.host.total_tokens});
    const OutputError err =
        compare_output(with_output(host_problem, o_view, lse_view), out_ref, lse_ref);
    const double tol = naive_output_bound(naive_err, in.host.spec.dtype);
    const bool out_ok = output_conforms(err, tol, in.host.spec.dtype);
    plan_ok = plan_ok && conf.ok;
    output_ok = output_ok && out_ok;
    // NaN-aware: std::max(a, NaN) returns a and would report a NaN run as a clean one.
    rel_error = std::isnan(rel_error) || std::isnan(err.rel_error) ? NAN : std::max(rel_error, err.rel_error);
    max_abs = std::isnan(max_abs) || std::isnan(err.max_abs_error) ? NAN : std::max(max_abs, err.max_abs_error);
    if (!header_printed) {
      header_printed = true;
      std::printf("proxyattn check: %s, heads %lld/%lld, head_dim %lld, %s on %s\n",
                  in.description.c_str(), static_cast<long long>(in.host.spec.num_qo_heads),
                  static_cast<long long>(in.host.spec.num_kv_heads),
                  static_cast<long long>(in.host.spec.head_dim), to_string(in.host.spec.dtype),
                  o.backend.c_str());
      std::printf("  %-10s %-14s %-16s %12s %12s %12s %10s\n", "last block", "plan", "output",
                  "rel_error", "max_abs", "naive error", "tolerance");
    }
    std::printf("  %-10s %-14s %-16s %12.3g %12.3g %12.3g %10.3g\n", to_string(mode),
                conf.ok ? "conformant" : "NOT conformant", out_ok ? "conformant" : "NOT conformant",
                err.rel_error, err.max_abs_error, naive_err.rel_error, tol);
    if (!conf.ok) std::printf("    first plan failure: %s\n", conf.first_failure.c_str());
    cases.push_back({{"last_block", to_string(mode)},
                     {"plan_conformant", conf.ok},
                     {"budget_mismatches", conf.budget_mismatches},
                     {"selection_mismatches", conf.selection_mismatches},
                     {"rows_checked", conf.rows_checked},
                     {"output_conformant", out_ok},
                     {"rel_error", err.rel_error},
                     {"max_abs_error", err.max_abs_error},
                     {"lse_max_abs_error", err.lse_max_abs_error},
                     {"naive_rel_error", naive_err.rel_error},
                     {"tolerance", tol},
                     {"density", hp.plan.stats().density_weighted}});
  }
  if (o.json) {
    nlohmann::json j;
    j["cases"] = cases;
    j["plan_conformant"] = plan_ok;
    j["output_conformant"] = output_ok;
    j["rel_error"] = rel_error;
    j["max_abs_error"] = max_abs;
    j["backend"] = o.backend;
    j["seq_len"] = in.host.total_tokens;
    j["dtype"] = to_string(in.host.spec.dtype);
    std::cout << j.dump() << std::endl;
  }
  return plan_ok && output_ok ? 0 : 1;
}

}  // namespace proxyattn::cli
