// src/cuda/kernel/online_lse.cuh: the online log-sum-exp row update shared by the proxy lse pass
// (estimate.cuh) and the last-block masses (budget.cuh). Softmax without values: each thread holds
// two rows (a and a + 8) of an m16n8 accumulator tile, 2 columns of each 8-key column tile, and the
// 4 threads of a quad together hold a row's 8 * kTiles logits.
#pragma once

#include <cmath>

#include "cuda/kernel/mma.cuh"

namespace proxyattn::cuda::kernel {

/// \brief Folds one tile of logits into the running (max, sum) of the thread's two rows, in log2
/// units. Naive equivalent: row_sum = sum over all keys so far of 2^(x - row_max), row_max = max x.
/// \tparam kTiles   8-key column tiles in rS
/// \param rS        [kTiles][4] logits, log2 units; -inf where masked. Element e belongs to row
///                  e / 2 (a, a + 8) and key column 2 * (lane % 4) + e % 2
/// \param row_max   [2] running max per row, -inf before the first key; quad-uniform
/// \param row_sum   [2] per-thread partial sum of 2^(x - row_max); quad_sum gives the row's sum
template <int kTiles>
__device__ __forceinline__ void online_lse_update(const float (&rS)[kTiles][4], float (&row_max)[2],
                                                  float (&row_sum)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    // New max of the row over this tile and everything before it (the quad shares one row).
    float mx = row_max[r];
#pragma unroll
    for (int nt = 0; nt < kTiles; ++nt) mx = fmaxf(mx, fmaxf(rS[nt][2 * r], rS[nt][2 * r + 1]));
    mx = quad_max(mx);
    // A fully masked row so far keeps base 0, so -inf - base stays -inf and never NaN.
    const float base = mx == -INFINITY ? 0.0f : mx;
    // This thread's terms of the tile, relative to the new max.
    float sum = 0.0f;
#pragma unroll
    for (int nt = 0; nt < kTiles; ++nt) {
      sum += exp2_approx(rS[nt][2 * r] - base) + exp2_approx(rS[nt][2 * r + 1] - base);
    }
    // Rescale the old sum to the new max, then add the tile.
    row_sum[r] = row_sum[r] * exp2_approx(row_max[r] - base) + sum;
    row_max[r] = mx;
  }
}

}  // namespace proxyattn::cuda::kernel
