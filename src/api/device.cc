// src/api/device.cc: proxyattn/device.h. Device memory goes through the CUDA backend (or its
// absent stand-in, which rejects device memory in a CPU-only build).
#include "proxyattn/device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/check.h"
#include "cuda/backend.h"

namespace proxyattn {

bool cuda_available() { return cuda::available(); }

std::string device_name(int device_id) {
  return cuda::available() ? cuda::device_name(device_id) : std::string("none");
}

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device,
                std::size_t bytes, const Runtime& runtime) {
  if (bytes == 0) return;
  PROXYATTN_CHECK(dst != nullptr && src != nullptr, "copy_bytes: dst = ", dst, ", src = ", src,
                  ", expected memory for ", bytes, " bytes");
  if (dst_device == Device::kCPU && src_device == Device::kCPU) {
    std::memmove(dst, src, bytes);
  } else if (dst_device == Device::kCPU) {
    cuda::copy_to_host(dst, src, bytes, runtime);
  } else if (src_device == Device::kCPU) {
    cuda::copy_to_device(dst, src, bytes, runtime);
  } else {
    cuda::copy_device_to_device(dst, src, bytes, runtime);
  }
}

void synchronize(Device device, const Runtime& runtime) {
  if (device == Device::kCUDA) cuda::synchronize(runtime);
}

Buffer::Buffer(std::size_t bytes, Device device, int device_id)
    : size_(bytes), device_(device), device_id_(device_id) {
  if (device == Device::kCUDA) {
    if (bytes == 0) return;
    data_ = cuda::device_alloc(bytes);  // zero-filled
    return;
  }
  // At least one aligned line, so that even an empty buffer has an address. A size within 255 of
  // SIZE_MAX would round to 0 and allocate nothing for a buffer that claims `bytes`.
  PROXYATTN_CHECK(bytes <= std::numeric_limits<std::size_t>::max() - 255, "Buffer: bytes = ", bytes,
                  ", expected at most SIZE_MAX - 255");
  const std::size_t rounded = (std::max<std::size_t>(bytes, 1) + 255) / 256 * 256;
  data_ = std::aligned_alloc(256, rounded);
  PROXYATTN_CHECK(data_ != nullptr, "Buffer: could not allocate ", bytes,
                  " bytes of host memory, expected a size the host can allocate");
  std::memset(data_, 0, rounded);
}

Buffer::~Buffer() { release(); }

Buffer::Buffer(Buffer&& other) noexcept
    : data_(other.data_), size_(other.size_), device_(other.device_), device_id_(other.device_id_) {
  other.data_ = nullptr;
  other.size_ = 0;
}

Buffer& Buffer::operator=(Buffer&& other) noexcept {
  if (this != &other) {
    release();
    data_ = other.data_;
    size_ = other.size_;
    device_ = other.device_;
    device_id_ = other.device_id_;
    other.data_ = nullptr;
    other.size_ = 0;
  }
  return *this;
}

void Buffer::release() noexcept {
  if (data_ == nullptr) return;
  if (device_ == Device::kCUDA) {
    cuda::device_free(data_);
  } else {
    std::free(data_);
  }
  data_ = nullptr;
}

TensorView Buffer::view(DType dtype, std::initializer_list<std::int64_t> shape) const {
  TensorView v = TensorView::contiguous(data_, dtype, shape, device_, device_id_);
  for (int d = 0; d < v.rank; ++d) {
    PROXYATTN_CHECK(v.shape[d] >= 0, "Buffer::view: shape ", v.shape_string(),
                    ", expected sizes >= 0");
  }
  std::size_t needed = 0;  // numel() throws when the element count overflows
  PROXYATTN_CHECK(!__builtin_mul_overflow(static_cast<std::size_t>(v.numel()), dtype_size(dtype),
                                          &needed) && needed <= size_,
                  "Buffer::view: shape ", v.shape_string(), " of ", to_string(dtype),
                  ", expected at most the buffer's ", size_, " bytes");
  return v;
}

std::vector<std::uint8_t> Buffer::to_host() const {
  std::vector<std::uint8_t> out(size_);
  copy_bytes(out.data(), Device::kCPU, data_, device_, size_);
  return out;
}

Plan copy_plan(const Plan& plan, Workspace workspace, const Runtime& runtime) {
  // The plan's arrays lie in one span of its workspace, group_order first and flags last
  // (bind_plan's order); that span moves as a whole and every pointer keeps its offset.
  const char* base = reinterpret_cast<const char*>(plan.group_order);
  const char* end = reinterpret_cast<const char*>(plan.flags + 4);
  PROXYATTN_CHECK(plan.group_order != nullptr && plan.flags != nullptr && base < end,
                  "copy_plan: plan has null arrays, expected a plan from plan() or "
                  "plan_from_block_mask()");
  for (const void* p : {static_cast<const void*>(plan.last_order), static_cast<const void*>(plan.counts),
                        static_cast<const void*>(plan.budgets), static_cast<const void*>(plan.density)}) {
    const char* c = static_cast<const char*>(p);
    PROXYATTN_CHECK(c > base && c < end, "copy_plan: plan arrays are not laid out as plan() lays "
                    "them, expected a plan from plan() or plan_from_block_mask()");
  }
  const std::size_t bytes = static_cast<std::size_t>(end - base);
  PROXYATTN_CHECK(workspace.data != nullptr && workspace.size >= bytes, "copy_plan: workspace.size = ",
                  workspace.size, ", expected at least the plan's ", bytes, " bytes");
  PROXYATTN_CHECK(reinterpret_cast<std::uintptr_t>(workspace.data) % 256 == 0,
                  "copy_plan: workspace.data = ", workspace.data, ", expected 256-byte alignment");
  copy_bytes(workspace.data, workspace.device, base, plan.device, bytes, runtime);
  Plan out = plan;
  out.device = workspace.device;
  out.device_id = workspace.device_id;
  char* dst = static_cast<char*>(workspace.data);
  auto rebase = [&](auto* p) {
    using T = std::remove_pointer_t<decltype(p)>;
    return reinterpret_cast<T*>(dst + (reinterpret_cast<const char*>(p) - base));
  };
  out.group_order = rebase(plan.group_order);
  out.last_order = rebase(plan.last_order);
  out.counts = rebase(plan.counts);
  out.budgets = rebase(plan.budgets);
  out.density = rebase(plan.density);
  out.flags = rebase(plan.flags);
  return out;
}

}  // namespace proxyattn
