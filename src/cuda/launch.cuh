// src/cuda/launch.cuh: templated launchers (grid, shared memory, launch + error check). The
// generated files in src/cuda/inst/ instantiate them once per (dtype, head_dim); dispatch.cu
// declares those instantiations extern and picks one at run time.
#pragma once

#include <cstdint>

#include "cuda/common.cuh"
#include "cuda/kernel/attend.cuh"
#include "cuda/kernel/budget.cuh"
#include "cuda/kernel/estimate.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda {

/// \brief Stage 7 over the launch's sequences; grid (num_qo_heads, grid_rows).
template <typename T, int kHeadDim, int kBlock>
void launch_attend(const AttendParams& p, int grid_rows, cudaStream_t stream) {
  using Traits = AttendTraits<kHeadDim, kBlock>;
  auto* kernel = &kernel::attend_kernel<T, kHeadDim, kBlock>;
  constexpr int kSmem = static_cast<int>(Traits::kSmemBytes);
  if (kSmem > 48 * 1024) {
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  }
  const dim3 grid(p.num_qo_heads, grid_rows);
  kernel<<<grid, Traits::kThreads, kSmem, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

/// \brief Stages 2-4 of one sequence: pooling, proxy lse, block scores (block_scores must hold
/// -inf beforehand).
template <typename T, int kHeadDim>
void launch_estimate(const EstimateParams& p, cudaStream_t stream) {
  using Traits = EstimateTraits<kHeadDim>;
  kernel::pool_kernel<T><<<dim3(p.num_samples, p.num_proxy_heads), 128, 0, stream>>>(p, kHeadDim);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  constexpr int kSmem = static_cast<int>(Traits::kSmemBytes);
  const dim3 grid((p.num_samples + Traits::kRows - 1) / Traits::kRows, p.num_proxy_heads);
  auto* lse_kernel = &kernel::proxy_pass_kernel<T, kHeadDim, 0>;
  auto* score_kernel = &kernel::proxy_pass_kernel<T, kHeadDim, 1>;
  if (kSmem > 48 * 1024) {
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(lse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(score_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  }
  lse_kernel<<<grid, Traits::kThreads, kSmem, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  score_kernel<<<grid, Traits::kThreads, kSmem, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

/// \brief Stage 5 masses a_h of one sequence (partials, then the per-head reduction).
template <typename T, int kHeadDim>
void launch_mass(const BudgetParams& p, cudaStream_t stream) {
  using Traits = MassTraits<kHeadDim>;
  auto* kernel = &kernel::mass_partials_kernel<T, kHeadDim>;
  constexpr int kSmem = static_cast<int>(Traits::kSmemBytes);
  if (kSmem > 48 * 1024) {
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  }
  const dim3 grid((p.num_blocks + Traits::kBlocksPerCta - 1) / Traits::kBlocksPerCta,
                  p.num_qo_heads);
  kernel<<<grid, Traits::kThreads, kSmem, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  kernel::mass_reduce_kernel<<<p.num_qo_heads, 256, 0, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace proxyattn::cuda
