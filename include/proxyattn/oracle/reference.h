// proxyattn/oracle/reference.h: the plain double-precision reference of every docs/SPEC.md stage. Never
// optimized: it is the yardstick that the CPU and CUDA paths are tested against.
#pragma once

#include <cstdint>
#include <vector>

#include "proxyattn/config.h"
#include "proxyattn/plan.h"
#include "proxyattn/problem.h"
#include "proxyattn/types.h"

namespace proxyattn::reference {

/// \brief The operands the oracle reads: host views of q, k and, where a function needs them, v,
/// out and lse (rank 0 = absent), with the host cu_seqlens and the softmax scale (0 = 1/sqrt(d)).
/// They are validated as the public entries validate theirs.
struct Operands {
  TensorView q, k, v;  // [total_tokens, heads, head_dim]
  TensorView out;      // [total_tokens, num_qo_heads, head_dim]  compare_output only
  TensorView lse;      // [num_qo_heads, total_tokens] fp32       compare_output only, optional
  CuSeqlens cu_seqlens;
  float scale = 0.0f;
};

/// \brief Everything the reference decides for one sequence, in double.
struct SeqPlan {
  std::int64_t num_blocks = 0;          // nb
  bool dense = false;                   // ran dense (N <= dense_below)
  std::vector<double> block_scores;     // [g, nb, nb]  S_j[m][n] (stage 4); -inf if undefined
  std::vector<double> mass;             // [H, nb]      a_h[n] (stage 5)
  std::vector<double> mass_sum;         // [H]          sum_n a_h[n]
  std::vector<double> margin;           // [H]  |top-n_h sum - gamma*sum| / sum at the unclamped cut
  std::vector<std::int64_t> raw_budgets;  // [H]  n_h before clamps (stage 5)
  std::vector<std::int64_t> budgets;    // [H]          n_h after clamps
  std::vector<std::int32_t> group_order;  // [g, tri(nb)]  row m of group j at j*tri + m(m+1)/2
  std::vector<std::int32_t> last_order;   // [H, nb]   per-head order of the last block
  std::vector<std::int32_t> counts;       // [H, nb]   c_h[m]
};

/// \brief Stages 1-6 for every sequence of the problem (reads q and k on the host).
std::vector<SeqPlan> plan(const Operands& operands, const Config& config);

/// \brief Writes a reference plan into workspace memory as a Plan (host), so the fast paths can
/// attend over exactly the reference's selection.
Plan to_plan(const std::vector<SeqPlan>& seqs, const ProblemShape& shape, const Config& config,
             Workspace workspace, float scale);

/// \brief Stage 7 over a dense 0/1 block mask in Plan::to_dense() layout, in double.
/// \param out [total_tokens, num_qo_heads, head_dim]   \param lse [num_qo_heads, total_tokens]
void attend(const Operands& operands, std::int64_t block_size, const std::vector<std::uint8_t>& mask,
            std::vector<double>& out, std::vector<double>& lse);

/// \brief The same-precision naive attention of docs/STYLE.md's tolerance rule: fp32 scores and a
/// two-pass softmax (not online), P rounded to the input dtype before P.V, fp32 accumulation, O
/// rounded to the dtype. Its error against attend() is the yardstick a fast path is held to.
/// \param out [total_tokens, num_qo_heads, head_dim] in the problem's dtype (contiguous bytes)
void naive_attend(const Operands& operands, std::int64_t block_size,
                  const std::vector<std::uint8_t>& mask, std::vector<std::uint8_t>& out);

/// \brief Every block selected, [sum_i num_qo_heads * nb_i * nb_i] in Plan::to_dense() layout.
std::vector<std::uint8_t> full_mask(const ProblemShape& shape, std::int64_t block_size);

/// \brief Dense causal attention in double (every block selected).
void dense(const Operands& operands, std::vector<double>& out, std::vector<double>& lse);

/// \brief Reads element i of a q/k/v buffer of the problem's dtype as double.
double load(const void* data, DType dtype, std::int64_t i);

}  // namespace proxyattn::reference
