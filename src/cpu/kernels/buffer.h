// src/cpu/kernels/buffer.h: 64-byte aligned scratch for the micro-kernels (baseline code only;
// the ISA units never include it).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <new>

namespace proxyattn::cpu::kernels {

/// \brief n zero-filled Ts, 64-byte aligned (4 KB for 64 KB and more).
template <typename T>
class AlignedArray {
 public:
  AlignedArray() = default;
  explicit AlignedArray(std::size_t n) { reset(n); }
  ~AlignedArray() { std::free(data_); }
  AlignedArray(const AlignedArray&) = delete;
  AlignedArray& operator=(const AlignedArray&) = delete;

  /// Reallocates for n elements (zero-filled); throws std::bad_alloc on failure.
  void reset(std::size_t n) {
    std::free(data_);
    data_ = nullptr;
    const std::size_t bytes = n * sizeof(T);
    const std::size_t align = bytes >= (1u << 16) ? 4096 : 64;
    const std::size_t size = (bytes + align - 1) / align * align + align;
    data_ = static_cast<T*>(std::aligned_alloc(align, size));
    if (data_ == nullptr) throw std::bad_alloc();
    std::memset(static_cast<void*>(data_), 0, size);
    size_ = n;
  }
  T* data() { return data_; }
  const T* data() const { return data_; }
  std::size_t size() const { return size_; }
  T& operator[](std::size_t i) { return data_[i]; }

 private:
  T* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace proxyattn::cpu::kernels
