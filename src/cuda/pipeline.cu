// src/cuda/pipeline.cu: the CUDA backend's entries (src/cuda/backend.h): the plan's stages 1-6 in
// order and stage 7 over a plan or dense. Everything runs on runtime.stream in stream order: no
// host synchronization, no allocation, graph-capturable (the persistent attention kernel keeps
// its tile counters in static device memory; dispatch.h). Shapes come from the host cu_seqlens
// that the layout keeps. Every launch goes through launch.cuh.
#include <algorithm>
#include <cmath>

#include "common/check.h"
#include "common/workspace.h"
#include "cuda/backend.h"
#include "cuda/common.cuh"
#include "cuda/dispatch.h"
#include "cuda/launch.cuh"
#include "cuda/params.h"
#include "cuda/tile_config.h"

namespace proxyattn::cuda {

namespace {

void check_alignment(const Problem& p) {
  auto aligned = [](const void* ptr) { return reinterpret_cast<std::uintptr_t>(ptr) % 16 == 0; };
  PROXYATTN_CHECK(aligned(p.q) && aligned(p.k) && (p.v == nullptr || aligned(p.v)) &&
                      (p.o == nullptr || aligned(p.o)),
                  "q/k/v/out must be 16-byte aligned on CUDA");
  const std::int64_t strides[] = {p.q_stride_n, p.q_stride_h, p.k_stride_n, p.k_stride_h,
                                  p.v_stride_n, p.v_stride_h, p.o_stride_n, p.o_stride_h};
  for (std::int64_t s : strides) {
    PROXYATTN_CHECK(s % 8 == 0, "stride = ", s, ", expected a multiple of 8 elements on CUDA");
  }
}

AttendParams attend_params(const Problem& p) {
  AttendParams a;
  a.q = p.q;
  a.k = p.k;
  a.v = p.v;
  a.o = p.o;
  a.lse = p.lse;
  a.q_stride_n = p.q_stride_n;
  a.q_stride_h = p.q_stride_h;
  a.k_stride_n = p.k_stride_n;
  a.k_stride_h = p.k_stride_h;
  a.v_stride_n = p.v_stride_n;
  a.v_stride_h = p.v_stride_h;
  a.o_stride_n = p.o_stride_n;
  a.o_stride_h = p.o_stride_h;
  a.lse_stride_h = p.lse_stride_h;
  a.total_tokens = p.shape.total_tokens;
  a.num_qo_heads = static_cast<std::int32_t>(p.shape.num_qo_heads);
  a.num_kv_heads = static_cast<std::int32_t>(p.shape.num_kv_heads);
  a.group_size = static_cast<std::int32_t>(p.shape.group_size());
  a.scale_log2 = p.scale * 1.4426950408889634f;
  return a;
}

// Launches the attention kernel over the sequences, kMaxSeqsPerLaunch at a time. layout and
// plan are null for dense attention.
void run_attention(const Problem& p, int block_size, const PlanLayout* layout, const Plan* plan,
                   const Runtime& runtime) {
  check_alignment(p);
  AttendParams a = attend_params(p);
  if (plan != nullptr) {
    a.group_order = plan->group_order;
    a.last_order = plan->last_order;
    a.counts = plan->counts;
    a.flags = plan->flags;
    a.heads_per_group = static_cast<std::int32_t>(layout->num_qo_heads / layout->num_proxy_heads);
  }
  constexpr int kMaxGridRows = 65535;
  const std::int64_t batch = p.shape.batch();
  // Every sequence is checked before the first launch, so a rejected call writes nothing.
  for (std::int64_t j = 0; j < batch; ++j) {
    const std::int64_t nb = (p.shape.seq_len(j) + block_size - 1) / block_size;
    PROXYATTN_CHECK(nb <= kMaxGridRows, "sequence ", j, " has ", nb, " blocks of ", block_size,
                    " tokens, expected at most ", kMaxGridRows, " for the CUDA kernel");
  }
  std::int64_t i = 0;
  while (i < batch) {
    a.num_seqs = 0;
    int rows = 0;
    for (; i < batch && a.num_seqs < kMaxSeqsPerLaunch; ++i) {
      const std::int64_t len = p.shape.seq_len(i);
      const std::int64_t nb = (len + block_size - 1) / block_size;
      if (nb == 0) continue;
      if (rows + nb > kMaxGridRows) break;
      SeqDesc& s = a.seqs[a.num_seqs++];
      s.token_start = p.shape.cu_seqlens[i];
      s.len = static_cast<std::int32_t>(len);
      s.num_blocks = static_cast<std::int32_t>(nb);
      s.cta_start = rows;
      s.dense = plan == nullptr ? 1 : 0;
      if (layout != nullptr) {
        s.order_offset = layout->order_offset[i];
        s.head_offset = layout->head_offset[i];
      }
      rows += static_cast<int>(nb);
    }
    if (a.num_seqs > 0) {
      dispatch_attend(p.dtype, p.shape.head_dim, block_size, a, rows, runtime.stream);
    }
  }
}

template <typename T>
T* at(const Workspace& ws, std::size_t offset, std::int64_t elements = 0) {
  return workspace_at<T>(ws, offset) + elements;
}

}  // namespace

bool available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

bool is_supported(DType dtype, std::int64_t head_dim) {
  return attend_kernel_for(dtype, head_dim, 128) != KernelFamily::kNone;
}

void attend(const Problem& problem, const Plan& plan, const Runtime& runtime) {
  run_attention(problem, static_cast<int>(plan.layout.block_size), &plan.layout, &plan, runtime);
}

void dense(const Problem& problem, const Runtime& runtime) {
  // 128-row tiles: the larger tile serves dense attention best (fewer K/V reloads).
  run_attention(problem, 128, nullptr, nullptr, runtime);
}

void plan(const Problem& p, const Config& config, Plan& plan, Workspace workspace,
          const Runtime& runtime) {
  check_alignment(p);
  const WorkspaceLayout l = make_workspace_layout(p.shape, config);
  const cudaStream_t stream = to_stream(runtime.stream);
  const std::int64_t H = l.num_qo_heads, g = l.num_proxy_heads, D = l.head_dim;
  for (std::int64_t i = 0; i < l.batch; ++i) {  // checked before anything is launched
    PROXYATTN_CHECK(l.is_dense[i] || l.num_blocks[i] <= SortTraits::kMaxSortBlocks, "sequence ", i,
                    " has ", l.num_blocks[i], " blocks, expected at most ",
                    SortTraits::kMaxSortBlocks,
                    " for the CUDA plan (its sorts are in shared memory)");
  }
  PROXYATTN_CUDA_CHECK(cudaMemsetAsync(plan.flags, 0, 4 * sizeof(std::int32_t), stream));
  for (std::int64_t i = 0; i < l.batch; ++i) {
    const std::int64_t nb = l.num_blocks[i];
    if (nb == 0) continue;
    const std::int64_t N = l.cu_seqlens[i + 1] - l.cu_seqlens[i];
    const int g32 = static_cast<int>(g);
    SelectParams s;
    s.block_scores = at<float>(workspace, l.block_scores_bytes, l.order_offset[i]);
    s.group_order = plan.group_order + l.order_offset[i];
    s.last_order = plan.last_order + l.head_offset[i];
    s.counts = plan.counts + l.head_offset[i];
    s.budgets = plan.budgets + i * H;
    s.density = plan.density + i * H;
    s.num_blocks = static_cast<std::int32_t>(nb);
    s.num_qo_heads = static_cast<std::int32_t>(H);
    s.heads_per_group = static_cast<std::int32_t>(H / g);
    s.keep_sink = config.keep_sink ? 1 : 0;
    s.keep_diagonal = config.keep_diagonal ? 1 : 0;
    s.exact_last = config.last_block_selection == LastBlockSelection::kExact ? 1 : 0;
    s.forced_density = config.forced_density;
    if (l.is_dense[i]) {
      launch_dense_plan(s, g32, stream);
      continue;
    }
    // Stages 2-4: proxy heads, strided logits, block scores.
    const std::int64_t samples = l.sample_offset[i + 1] - l.sample_offset[i];
    char* proxy_q = at<char>(workspace, l.proxy_q_bytes, l.sample_offset[i] * g * D * 4);
    char* proxy_k = at<char>(workspace, l.proxy_k_bytes, l.sample_offset[i] * g * D * 4);
    EstimateParams e;
    e.q = p.q;
    e.k = p.k;
    e.q_stride_n = p.q_stride_n;
    e.q_stride_h = p.q_stride_h;
    e.k_stride_n = p.k_stride_n;
    e.k_stride_h = p.k_stride_h;
    e.token_start = l.cu_seqlens[i];
    e.len = static_cast<std::int32_t>(N);
    e.num_samples = static_cast<std::int32_t>(samples);
    e.stride = static_cast<std::int32_t>(l.stride);
    e.block_size = static_cast<std::int32_t>(l.block_size);
    e.num_blocks = static_cast<std::int32_t>(nb);
    e.num_proxy_heads = g32;
    e.q_heads_per_group = static_cast<std::int32_t>(H / g);
    e.kv_heads_per_group = static_cast<std::int32_t>(l.num_kv_heads / g);
    e.q_inv_count = 1.0f / static_cast<float>(H / g);
    e.k_inv_count = 1.0f / static_cast<float>(l.num_kv_heads / g);
    e.scale = p.scale;
    // The proxy buffers hold 4 bytes per element; the input dtype takes 2, and the upper half of
    // proxy_q holds lse_j (g * samples floats <= g * samples * D * 2 bytes).
    e.proxy_q = proxy_q;
    e.proxy_k = proxy_k;
    e.proxy_lse = reinterpret_cast<float*>(proxy_q + samples * g * D * 2);
    e.block_scores = const_cast<float*>(s.block_scores);
    // The proxy K buffer's upper half (head_dim x 2 bytes per sample and group) is free: the lse
    // pass's per-chunk partials go there (at most kMaxEstimateChunks x 8 bytes per sample).
    e.lse_partials = reinterpret_cast<float2*>(proxy_k + samples * g * D * 2);
    dispatch_estimate(p.dtype, D, e, runtime.stream);

    // Stage 5: masses a_h, then budgets (and the exact last-block orders).
    BudgetParams b;
    b.q = p.q;
    b.k = p.k;
    b.q_stride_n = p.q_stride_n;
    b.q_stride_h = p.q_stride_h;
    b.k_stride_n = p.k_stride_n;
    b.k_stride_h = p.k_stride_h;
    b.token_start = l.cu_seqlens[i];
    b.len = static_cast<std::int32_t>(N);
    b.last_rows = static_cast<std::int32_t>(std::min<std::int64_t>(l.block_size, N));
    b.block_size = static_cast<std::int32_t>(l.block_size);
    b.num_blocks = static_cast<std::int32_t>(nb);
    b.num_qo_heads = static_cast<std::int32_t>(H);
    b.group_size = static_cast<std::int32_t>(H / l.num_kv_heads);
    b.scale_log2 = p.scale * 1.4426950408889634f;
    b.partials = at<float2>(workspace, l.mass_partials_bytes);
    b.mass = at<float>(workspace, l.mass_bytes, l.head_offset[i]);
    b.budgets = s.budgets;
    b.last_order = s.last_order;
    b.gamma = config.gamma;
    b.min_blocks = config.min_budget_blocks();
    b.max_blocks = config.max_budget_blocks();
    b.keep_sink = s.keep_sink;
    b.keep_diagonal = s.keep_diagonal;
    b.exact_last = s.exact_last;
    dispatch_mass(p.dtype, D, b, runtime.stream);
    launch_budget(b, stream);

    // Stage 6: rankings and counts, then densities.
    launch_select(s, g32, stream);
  }
}

void copy_to_host(void* dst, const void* src, std::size_t bytes, const Runtime& runtime) {
  const cudaStream_t stream = to_stream(runtime.stream);
  PROXYATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream));
  PROXYATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_to_device(void* dst, const void* src, std::size_t bytes, const Runtime& runtime) {
  const cudaStream_t stream = to_stream(runtime.stream);
  PROXYATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
  PROXYATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void copy_device_to_device(void* dst, const void* src, std::size_t bytes, const Runtime& runtime) {
  const cudaStream_t stream = to_stream(runtime.stream);
  PROXYATTN_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  PROXYATTN_CUDA_CHECK(cudaStreamSynchronize(stream));
}

void* device_alloc(std::size_t bytes) {
  void* ptr = nullptr;
  PROXYATTN_CUDA_CHECK(cudaMalloc(&ptr, bytes == 0 ? 1 : bytes));
  PROXYATTN_CUDA_CHECK(cudaMemset(ptr, 0, bytes == 0 ? 1 : bytes));
  return ptr;
}

void device_free(void* ptr) {
  if (ptr != nullptr) cudaFree(ptr);
}

void synchronize(const Runtime& runtime) {
  PROXYATTN_CUDA_CHECK(cudaStreamSynchronize(to_stream(runtime.stream)));
}

std::string device_name(int device_id) {
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, device_id) != cudaSuccess) return "none";
  return prop.name;
}

}  // namespace proxyattn::cuda
