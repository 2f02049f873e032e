// src/cuda/dispatch.cu: returning-lambda switches from run-time values to the instantiations of
// src/cuda/inst/ (declared extern here). A value without a kernel throws and names itself.
#include <type_traits>

#include "cuda/dispatch.h"
#include "cuda/launch.cuh"

namespace proxyattn::cuda {

// Instantiations compiled in (CMake defines PROXYATTN_CUDA_<DTYPE>_HD<D> for each).
#define PROXYATTN_DECLARE_INST(CTYPE, HD)                                                      \
  extern template void launch_attend<CTYPE, HD, 64>(const AttendParams&, int, cudaStream_t);  \
  extern template void launch_attend<CTYPE, HD, 128>(const AttendParams&, int, cudaStream_t); \
  extern template void launch_estimate<CTYPE, HD>(const EstimateParams&, cudaStream_t);       \
  extern template void launch_mass<CTYPE, HD>(const BudgetParams&, cudaStream_t);
#ifdef PROXYATTN_CUDA_BF16_HD64
PROXYATTN_DECLARE_INST(__nv_bfloat16, 64)
#endif
#ifdef PROXYATTN_CUDA_BF16_HD128
PROXYATTN_DECLARE_INST(__nv_bfloat16, 128)
#endif
#ifdef PROXYATTN_CUDA_FP16_HD64
PROXYATTN_DECLARE_INST(__half, 64)
#endif
#ifdef PROXYATTN_CUDA_FP16_HD128
PROXYATTN_DECLARE_INST(__half, 128)
#endif
#undef PROXYATTN_DECLARE_INST

namespace {

constexpr bool compiled(DType dtype, std::int64_t head_dim) {
  (void)dtype;
  (void)head_dim;
#ifdef PROXYATTN_CUDA_BF16_HD64
  if (dtype == DType::kBFloat16 && head_dim == 64) return true;
#endif
#ifdef PROXYATTN_CUDA_BF16_HD128
  if (dtype == DType::kBFloat16 && head_dim == 128) return true;
#endif
#ifdef PROXYATTN_CUDA_FP16_HD64
  if (dtype == DType::kFloat16 && head_dim == 64) return true;
#endif
#ifdef PROXYATTN_CUDA_FP16_HD128
  if (dtype == DType::kFloat16 && head_dim == 128) return true;
#endif
  return false;
}

template <typename T>
struct TypeTag {
  using type = T;
};

/// Calls f(TypeTag<T>{}, std::integral_constant<int, D>{}) for a compiled (dtype, head_dim).
template <typename F>
void dispatch_dtype_head_dim(DType dtype, std::int64_t head_dim, F&& f) {
  PROXYATTN_CHECK(compiled(dtype, head_dim), "dtype = ", to_string(dtype), ", head_dim = ",
                  head_dim, ": this build has no CUDA kernel for them (see PROXYATTN_DTYPES and "
                  "PROXYATTN_HEAD_DIMS)");
  auto by_head_dim = [&](auto tag) {
    switch (head_dim) {
#if defined(PROXYATTN_CUDA_BF16_HD64) || defined(PROXYATTN_CUDA_FP16_HD64)
      case 64:
        return f(tag, std::integral_constant<int, 64>{});
#endif
#if defined(PROXYATTN_CUDA_BF16_HD128) || defined(PROXYATTN_CUDA_FP16_HD128)
      case 128:
        return f(tag, std::integral_constant<int, 128>{});
#endif
      default:
        PROXYATTN_FAIL("head_dim = ", head_dim, ", expected 64 or 128 on CUDA");
    }
  };
  switch (dtype) {
    case DType::kBFloat16:
      return by_head_dim(TypeTag<__nv_bfloat16>{});
    case DType::kFloat16:
      return by_head_dim(TypeTag<__half>{});
    default:
      PROXYATTN_FAIL("dtype = ", to_string(dtype), ", expected bf16 or fp16 on CUDA");
  }
}

// Calls only instantiations that exist: a (dtype, head_dim) pair reached through the switch but
// not compiled (e.g. bf16 x 64 when only fp16 x 64 is built) was rejected by the check above.
template <typename T, int kHeadDim>
constexpr bool has_inst() {
  return compiled(std::is_same<T, __half>::value ? DType::kFloat16 : DType::kBFloat16, kHeadDim);
}

}  // namespace

KernelFamily select_kernel(DType dtype, std::int64_t head_dim) {
  return compiled(dtype, head_dim) ? KernelFamily::kSm80Mma : KernelFamily::kNone;
}

void dispatch_attend(DType dtype, std::int64_t head_dim, int block_size, const AttendParams& p,
                     int grid_rows, void* stream) {
  dispatch_dtype_head_dim(dtype, head_dim, [&](auto tag, auto hd) {
    using T = typename decltype(tag)::type;
    constexpr int kHeadDim = decltype(hd)::value;
    if constexpr (has_inst<T, kHeadDim>()) {
      const cudaStream_t s = to_stream(stream);
      switch (block_size) {
        case 64:
          return launch_attend<T, kHeadDim, 64>(p, grid_rows, s);
        case 128:
          return launch_attend<T, kHeadDim, 128>(p, grid_rows, s);
        default:
          PROXYATTN_FAIL("block_size = ", block_size, ", expected 64 or 128");
      }
    }
  });
}

void dispatch_estimate(DType dtype, std::int64_t head_dim, const EstimateParams& p, void* stream) {
  dispatch_dtype_head_dim(dtype, head_dim, [&](auto tag, auto hd) {
    using T = typename decltype(tag)::type;
    constexpr int kHeadDim = decltype(hd)::value;
    if constexpr (has_inst<T, kHeadDim>()) launch_estimate<T, kHeadDim>(p, to_stream(stream));
  });
}

void dispatch_mass(DType dtype, std::int64_t head_dim, const BudgetParams& p, void* stream) {
  dispatch_dtype_head_dim(dtype, head_dim, [&](auto tag, auto hd) {
    using T = typename decltype(tag)::type;
    constexpr int kHeadDim = decltype(hd)::value;
    if constexpr (has_inst<T, kHeadDim>()) launch_mass<T, kHeadDim>(p, to_stream(stream));
  });
}

}  // namespace proxyattn::cuda
