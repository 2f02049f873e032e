// src/cuda/launch.cu: the launchers of launch.cuh that take no type parameters (stages 5-6 sorts,
// densities, dense plans).
#include "cuda/kernel/budget.cuh"
#include "cuda/kernel/select.cuh"
#include "cuda/launch.cuh"

namespace proxyattn::cuda {

namespace {

/// Shared memory of a bitonic sort over nb keys (next power of two, 8 bytes each); raises the
/// kernel's limit past 48 KiB when needed.
template <typename Kernel>
int sort_smem(Kernel* fn, int nb) {
  const int bytes = kernel::next_pow2(nb) * static_cast<int>(sizeof(std::uint64_t));
  if (bytes > 48 * 1024) {
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes));
  }
  return bytes;
}

}  // namespace

void launch_budget(const BudgetParams& p, cudaStream_t stream) {
  const int smem = sort_smem(kernel::budget_kernel, p.num_blocks);
  kernel::
      budget_kernel<<<static_cast<unsigned>(p.num_qo_heads), SortTraits::kThreads, smem, stream>>>(
          p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

void launch_select(const SelectParams& p, int num_proxy_heads, cudaStream_t stream) {
  const int smem = sort_smem(kernel::select_kernel, p.num_blocks);
  kernel::select_kernel<<<dim3(static_cast<unsigned>(p.num_blocks),
                               static_cast<unsigned>(num_proxy_heads)),
                          SortTraits::kThreads, smem, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  kernel::density_kernel<<<static_cast<unsigned>(p.num_qo_heads), 256, 0, stream>>>(p);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

void launch_dense_plan(const SelectParams& p, int num_proxy_heads, cudaStream_t stream) {
  kernel::dense_plan_kernel<<<static_cast<unsigned>(p.num_blocks), 256, 0, stream>>>(
      p, num_proxy_heads);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

}  // namespace proxyattn::cuda
