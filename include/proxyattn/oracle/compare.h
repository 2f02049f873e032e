// proxyattn/oracle/compare.h: runs the double reference on a workload and reports mismatches.
#pragma once

#include <string>
#include <vector>

#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/workload.h"

namespace proxyattn::testing {

/// \brief The reference output (double) of attending `mask` (Plan::to_dense layout).
struct Reference {
  std::vector<double> out;  // [total_tokens, num_qo_heads, head_dim]
  std::vector<double> lse;  // [num_qo_heads, total_tokens]
  OutputError naive;        // the same-precision naive implementation's error against out
  /// docs/STYLE.md's bound for this workload: naive_output_bound(naive, dtype).
  double bound(DType dtype) const { return naive_output_bound(naive, dtype); }
};
Reference reference_attend(const Workload& w, std::int64_t block_size,
                           const std::vector<std::uint8_t>& mask, float scale = 0.0f);
Reference reference_dense(const Workload& w, float scale = 0.0f);

/// \brief The oracle's operands for a workload, with its output where given (for compare_output).
reference::Operands operands_of(const Workload& w, const Output* out = nullptr, float scale = 0.0f);

/// \brief The first `limit` elements whose error exceeds tol, as "(head h, token t, dim d): got
/// x, want y" lines, plus max abs, mean abs and NMSE.
std::string describe_mismatches(const Workload& w, const Output& out, const Reference& ref,
                                double tol, int limit = 10);

}  // namespace proxyattn::testing
