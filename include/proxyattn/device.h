// proxyattn/device.h: memory on either device without CUDA headers: whether CUDA is there, owning
// buffers, copies in any direction, and plan copies between host and device. The CLI, the Python
// binding and the benchmarks use only this and the rest of the public API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <vector>

#include "proxyattn/plan.h"
#include "proxyattn/types.h"

namespace proxyattn {

/// \brief True when this build has the CUDA backend and a CUDA device is visible.
bool cuda_available();

/// \brief The name of CUDA device `device_id` (e.g. "NVIDIA H100 80GB HBM3"), or "none" when
/// cuda_available() is false.
std::string device_name(int device_id = 0);

/// \brief Copies `bytes` from src to dst, host or device on either side, on runtime.stream, then
/// synchronizes. Throws Error for device memory in a build without CUDA.
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                std::size_t bytes, const Runtime& runtime = {});

/// \brief Blocks until the work queued on runtime.stream is done (nothing to wait for on the CPU).
void synchronize(Device device, const Runtime& runtime = {});

/// \brief Owning memory on the host or a CUDA device: 256-byte aligned (a valid workspace),
/// zero-filled, move-only.
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(std::size_t bytes, Device device = Device::kCPU, int device_id = 0);
  ~Buffer();
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  void* data() const { return data_; }
  std::size_t size() const { return size_; }
  Device device() const { return device_; }
  int device_id() const { return device_id_; }
  /// \brief This memory as a workspace for plan(), prefill() or copy_plan().
  Workspace workspace() const { return Workspace{data_, size_, device_, device_id_}; }
  /// \brief A contiguous view of this memory; throws Error when the shape needs more bytes.
  TensorView view(DType dtype, std::initializer_list<std::int64_t> shape) const;
  /// \brief The contents as host bytes (a synchronizing copy for device memory).
  std::vector<std::uint8_t> to_host() const;

 private:
  void release() noexcept;
  void* data_ = nullptr;
  std::size_t size_ = 0;
  Device device_ = Device::kCPU;
  int device_id_ = 0;
};

/// \brief Copies a plan's arrays into another workspace (host or device, at least as large as the
/// plan's own) and returns the plan viewing them: a host-built plan_from_block_mask() goes to the
/// GPU this way, and a device plan comes back for inspection. Synchronizes.
Plan copy_plan(const Plan& plan, Workspace workspace, const Runtime& runtime = {});

}  // namespace proxyattn
