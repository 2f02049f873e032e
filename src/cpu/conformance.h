// src/cpu/conformance.h: SPEC.md section 4's conformance of a plan and of an output.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "cpu/reference.h"
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
/// the cut score) of SPEC.md section 4. plan must be a host plan (Plan::to_dense copies others).
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
OutputError compare_output(const Problem& problem, const std::vector<double>& out_ref,
                           const std::vector<double>& lse_ref);

/// \brief Tolerance rule of STYLE.md section 6: the error a same-precision naive
/// implementation makes, x2, with the 16-bit floor. Returns the rel_error bound for dtype.
double output_tolerance(DType dtype, std::int64_t head_dim);

}  // namespace proxyattn
