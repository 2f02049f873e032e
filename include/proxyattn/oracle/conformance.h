// proxyattn/oracle/conformance.h: docs/SPEC.md section 4's conformance of a plan and of an output.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "proxyattn/oracle/reference.h"
#include "proxyattn/plan.h"

namespace proxyattn {

/// \brief Result of checking a backend's plan against the reference's.
struct PlanConformance {
  bool ok = true;
  std::int64_t budgets_checked = 0, budget_mismatches = 0;    // mismatches beyond the margin
  std::int64_t rows_checked = 0, selection_mismatches = 0;    // rows with an out-of-delta swap
  std::string first_failure;                                  // empty when ok
};

/// \brief Rule 1 (budgets within the boundary margin) and rule 2 (swapped blocks within delta of
/// the cut score) of docs/SPEC.md section 4. plan must be a host plan (Plan::to_dense copies others).
PlanConformance check_plan(const std::vector<reference::SeqPlan>& ref, const Plan& plan,
                           const Config& config, double delta = 1e-3);

/// \brief Error of an output against a reference, per head.
struct OutputError {
  double rel_error = 0.0;      // max over heads of ||O - O_ref|| / ||O_ref||
  double max_abs_error = 0.0;  // max over elements
  double mean_abs_error = 0.0;
  double lse_max_abs_error = 0.0;  // over finite reference entries
  std::int64_t non_finite = 0;     // NaN/Inf in O where the reference is finite
  std::vector<double> rel_error_per_head;  // [num_qo_heads]
};

/// \brief Compares O (of the problem's dtype, strided as in the problem) and lse against the
/// double reference. lse may be nullptr.
OutputError compare_output(const reference::Operands& operands, const std::vector<double>& out_ref,
                           const std::vector<double>& lse_ref);

/// \brief A fixed ceiling on the relative error per head for dtype, for callers that have no
/// naive run to compare with (2e-5 fp32, 1.6e-2 bf16, 2e-3 fp16).
double output_tolerance(DType dtype, std::int64_t head_dim);

/// \brief docs/STYLE.md section 6's bound: 2x the relative error of the same-precision naive
/// implementation (reference::naive_attend against the double reference) plus noise (1e-6 for
/// fp32, 1e-4 for 16-bit).
double naive_output_bound(const OutputError& naive, DType dtype);

/// \brief docs/STYLE.md section 6's pass rule: no NaN/Inf where the reference is finite, LSE within
/// 1e-3, and rel_error <= bound, or for 16-bit dtypes within the floor (max abs <= 1e-2 and mean
/// abs <= 1e-3).
bool output_conforms(const OutputError& ours, double bound, DType dtype);

}  // namespace proxyattn
