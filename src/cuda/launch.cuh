// src/cuda/launch.cuh: every CUDA kernel launch of the backend (grid, shared memory, launch + error
// check), one launcher per stage kernel. The templated launchers are instantiated once per
// (dtype, head_dim) by the generated files in src/cuda/inst/ (dispatch.cu declares them extern and
// picks one at run time); the others are defined in launch.cu.
#pragma once

#include <cudaTypedefs.h>  // PFN_cuTensorMapEncodeTiled

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "cuda/common.cuh"
#include "cuda/kernel/attend.cuh"
#include "cuda/kernel/attend_sm90.cuh"
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

/// \brief cuTensorMapEncodeTiled from the driver (through the runtime, so nothing links libcuda).
inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static const PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult found{};
    PROXYATTN_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000,
                                                          cudaEnableDefault, &found));
    PROXYATTN_CHECK(found == cudaDriverEntryPointSuccess && fn != nullptr,
                    "cuTensorMapEncodeTiled: not found in the CUDA driver (need 12.0 or newer)");
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  return encode;
}

/// \brief TMA descriptor of a [tokens, heads, head_dim] tensor (strides in elements) viewed as
/// (head_dim, heads, tokens), loaded in 128-byte-swizzled boxes of 64 columns x 1 head x 128 rows.
template <typename T>
CUtensorMap head_major_map(const void* data, int head_dim, std::int64_t heads, std::int64_t tokens,
                           std::int64_t stride_n, std::int64_t stride_h) {
  static_assert(sizeof(T) == 2, "16-bit types");
  const CUtensorMapDataType type = std::is_same<T, __half>::value
                                       ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
                                       : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(head_dim), static_cast<cuuint64_t>(heads),
                              static_cast<cuuint64_t>(tokens)};
  // With one head its stride is never stepped over; any valid value does.
  const std::int64_t head_stride = heads > 1 ? stride_h : head_dim;
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(head_stride) * 2,
                                 static_cast<cuuint64_t>(stride_n) * 2};
  const cuuint32_t box[3] = {64, 1, 128};
  const cuuint32_t elem_strides[3] = {1, 1, 1};
  CUtensorMap map;
  const CUresult rc =
      tensor_map_encoder()(&map, type, 3, const_cast<void*>(data), dims, strides, box, elem_strides,
                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                           CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  PROXYATTN_CHECK(rc == CUDA_SUCCESS, "cuTensorMapEncodeTiled failed (error ", static_cast<int>(rc),
                  ") for a tensor of ", tokens, " x ", heads, " x ", head_dim, " with strides (",
                  stride_n, ", ", stride_h, ")");
  return map;
}

/// \brief Stage 7 with the sm_90a kernel (attend_sm90.cuh); grid (num_qo_heads, grid_rows), 128-row
/// blocks only.
template <typename T, int kHeadDim, int kStages, bool kPingPong, bool kPersistent>
void launch_attend_sm90(const AttendParams& p, int grid_rows, cudaStream_t stream) {
  using Traits = AttendSm90Traits<kHeadDim, kStages, kPersistent ? 2 : 1>;
  AttendSm90Params pp;
  pp.attend = p;
  pp.num_tiles = p.num_qo_heads * grid_rows;
  pp.q_map =
      head_major_map<T>(p.q, kHeadDim, p.num_qo_heads, p.total_tokens, p.q_stride_n, p.q_stride_h);
  pp.k_map =
      head_major_map<T>(p.k, kHeadDim, p.num_kv_heads, p.total_tokens, p.k_stride_n, p.k_stride_h);
  pp.v_map =
      head_major_map<T>(p.v, kHeadDim, p.num_kv_heads, p.total_tokens, p.v_stride_n, p.v_stride_h);
  auto* kernel = &kernel::attend_sm90_kernel<T, kHeadDim, kStages, kPingPong, kPersistent>;
  constexpr int kSmem = static_cast<int>(Traits::kSmemBytes);
  PROXYATTN_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  dim3 grid(p.num_qo_heads, grid_rows);
  if constexpr (kPersistent) {
    int device = 0, sms = 0;
    PROXYATTN_CUDA_CHECK(cudaGetDevice(&device));
    PROXYATTN_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    grid = dim3(static_cast<unsigned>(std::min({pp.num_tiles, sms, kernel::kSchedMaxCtas})));
    static std::atomic<unsigned> next_slot{0};
    pp.sched_slot = static_cast<std::int32_t>(next_slot++ % kernel::kSchedSlots);
  }
  kernel<<<grid, Traits::kThreads, kSmem, stream>>>(pp);
  PROXYATTN_CUDA_CHECK_LAUNCH();
}

/// \brief Stages 2-4 of one sequence: block scores to -inf, pooling, proxy lse, block scores.
template <typename T, int kHeadDim>
void launch_estimate(const EstimateParams& p, cudaStream_t stream) {
  using Traits = EstimateTraits<kHeadDim>;
  const std::int64_t num_scores =
      static_cast<std::int64_t>(p.num_proxy_heads) * p.num_blocks * (p.num_blocks + 1) / 2;
  kernel::
      fill_kernel<<<static_cast<unsigned>(std::min<std::int64_t>((num_scores + 255) / 256, 4096)),
                    256, 0, stream>>>(p.block_scores, num_scores, -INFINITY);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  kernel::pool_kernel<T><<<dim3(p.num_samples, p.num_proxy_heads), 128, 0, stream>>>(p, kHeadDim);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  constexpr int kSmem = static_cast<int>(Traits::kSmemBytes);
  // Key chunks of kChunkTiles tiles (512 sampled keys), fewer where the partials (8 bytes per
  // chunk and sample) would not fit the kMaxChunks x 8 bytes the caller gives per sample.
  constexpr int kChunkTiles = 8;
  const int key_tiles = (p.num_samples + 63) / 64;
  EstimateParams q = p;
  int chunks = 1;
  if (p.lse_partials != nullptr && key_tiles > kChunkTiles) {
    q.key_chunk_tiles =
        std::max(kChunkTiles, (key_tiles + kMaxEstimateChunks - 1) / kMaxEstimateChunks);
    chunks = (key_tiles + q.key_chunk_tiles - 1) / q.key_chunk_tiles;
  }
  const dim3 grid((p.num_samples + Traits::kRows - 1) / Traits::kRows, p.num_proxy_heads, chunks);
  auto* lse_kernel = &kernel::proxy_pass_kernel<T, kHeadDim, 0>;
  auto* score_kernel = &kernel::proxy_pass_kernel<T, kHeadDim, 1>;
  if (kSmem > 48 * 1024) {
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(lse_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
    PROXYATTN_CUDA_CHECK(
        cudaFuncSetAttribute(score_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem));
  }
  lse_kernel<<<grid, Traits::kThreads, kSmem, stream>>>(q);
  PROXYATTN_CUDA_CHECK_LAUNCH();
  if (chunks > 1) {
    kernel::proxy_lse_merge_kernel<<<dim3((p.num_samples + 255) / 256, p.num_proxy_heads), 256, 0,
                                     stream>>>(q);
    PROXYATTN_CUDA_CHECK_LAUNCH();
  }
  score_kernel<<<grid, Traits::kThreads, kSmem, stream>>>(q);
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

// Stages 5-6 kernels without type parameters (launch.cu).

/// \brief Stage 5 budgets and exact last-block orders of one sequence, after launch_mass.
void launch_budget(const BudgetParams& p, cudaStream_t stream);
/// \brief Stage 6 rankings and counts of one sequence, then the heads' densities.
void launch_select(const SelectParams& p, int num_proxy_heads, cudaStream_t stream);
/// \brief The plan of a sequence that runs dense (identity orders, full counts).
void launch_dense_plan(const SelectParams& p, int num_proxy_heads, cudaStream_t stream);

}  // namespace proxyattn::cuda
