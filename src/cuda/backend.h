// src/cuda/backend.h: the CUDA backend behind the public API (host-only declarations; no CUDA
// headers). The public entries validate; these run the stages on runtime.stream with no host
// synchronization between plan and attend.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "proxyattn/config.h"
#include "proxyattn/plan.h"
#include "common/problem.h"

namespace proxyattn::cuda {

/// \brief True when this build has CUDA and a device is visible.
bool available();
/// \brief Whether the CUDA kernels exist for this dtype and head_dim.
bool is_supported(DType dtype, std::int64_t head_dim);
/// \brief Stages 1-6 into plan's arrays; scratch from workspace (layout offsets).
void plan(const Problem& problem, const Config& config, Plan& plan, Workspace workspace,
          const Runtime& runtime);
/// \brief Stage 7 over plan.
void attend(const Problem& problem, const Plan& plan, const Runtime& runtime);
/// \brief Dense causal attention (the same kernel with every block selected).
void dense(const Problem& problem, const Runtime& runtime);
/// \brief Device-to-host copy on runtime.stream, then synchronize.
void copy_to_host(void* dst, const void* src, std::size_t bytes, const Runtime& runtime);
/// \brief Host-to-device copy on runtime.stream, then synchronize.
void copy_to_device(void* dst, const void* src, std::size_t bytes, const Runtime& runtime);
/// \brief Device-to-device copy on runtime.stream, then synchronize.
void copy_device_to_device(void* dst, const void* src, std::size_t bytes, const Runtime& runtime);
/// \brief cudaMalloc (zero-filled) / cudaFree for tools and tests that hold no CUDA headers.
void* device_alloc(std::size_t bytes);
void device_free(void* ptr);
/// \brief Blocks until all work on runtime.stream is done.
void synchronize(const Runtime& runtime);
/// \brief The name of a device, e.g. "NVIDIA H100 80GB HBM3".
std::string device_name(int device_id);

}  // namespace proxyattn::cuda
