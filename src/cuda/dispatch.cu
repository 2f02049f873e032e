// src/cuda/dispatch.cu: returning-lambda switches from run-time values to the instantiations of
// src/cuda/inst/ (declared extern here). A value without a kernel throws and names itself.
#include <cstdlib>
#include <string>
#include <type_traits>

#include "common/check.h"
#include "cuda/dispatch.h"
#include "cuda/launch.cuh"

namespace proxyattn::cuda {

// Instantiations compiled in (CMake defines PROXYATTN_CUDA_<DTYPE>_HD<D> for each).
#define PROXYATTN_DECLARE_INST(CTYPE, HD)                                                     \
  extern template void launch_attend<CTYPE, HD, 64>(const AttendParams&, int, cudaStream_t);  \
  extern template void launch_attend<CTYPE, HD, 128>(const AttendParams&, int, cudaStream_t); \
  extern template void launch_attend_sm90<CTYPE, HD, Sm90Config<HD>::kStages, false, false>(  \
      const AttendParams&, int, cudaStream_t);                                                \
  extern template void launch_attend_sm90<CTYPE, HD, Sm90Config<HD>::kStages, false, true>(   \
      const AttendParams&, int, cudaStream_t);                                                \
  extern template void launch_estimate<CTYPE, HD>(const EstimateParams&, cudaStream_t);       \
  extern template void launch_mass<CTYPE, HD>(const BudgetParams&, cudaStream_t);
// Variants of the sm_90a kernel, bf16 only (measured against the defaults by the benchmarks).
#define PROXYATTN_DECLARE_SM90_VARIANTS(HD)                                                      \
  extern template void launch_attend_sm90<__nv_bfloat16, HD, Sm90Config<HD>::kMoreStages, false, \
                                          false>(const AttendParams&, int, cudaStream_t);        \
  extern template void launch_attend_sm90<__nv_bfloat16, HD, Sm90Config<HD>::kStages, true,      \
                                          false>(const AttendParams&, int, cudaStream_t);
#ifdef PROXYATTN_CUDA_BF16_HD64
PROXYATTN_DECLARE_INST(__nv_bfloat16, 64)
PROXYATTN_DECLARE_SM90_VARIANTS(64)
#endif
#ifdef PROXYATTN_CUDA_BF16_HD128
PROXYATTN_DECLARE_INST(__nv_bfloat16, 128)
PROXYATTN_DECLARE_SM90_VARIANTS(128)
#endif
#ifdef PROXYATTN_CUDA_FP16_HD64
PROXYATTN_DECLARE_INST(__half, 64)
#endif
#ifdef PROXYATTN_CUDA_FP16_HD128
PROXYATTN_DECLARE_INST(__half, 128)
#endif
#undef PROXYATTN_DECLARE_INST
#undef PROXYATTN_DECLARE_SM90_VARIANTS

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
  PROXYATTN_CHECK(compiled(dtype, head_dim), "dtype = ", to_string(dtype),
                  ", head_dim = ", head_dim,
                  ": this build has no CUDA kernel for them (see PROXYATTN_DTYPES and "
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

namespace {

/// True when the current device is compute capability 9.0 (H100, H200).
bool device_is_sm90() {
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    cudaGetLastError();  // clear
    return false;
  }
  return major == 9 && minor == 0;
}

/// PROXYATTN_CUDA_ATTEND, or "" when unset.
std::string attend_override() {
  const char* v = std::getenv("PROXYATTN_CUDA_ATTEND");
  return v != nullptr ? std::string(v) : std::string();
}

}  // namespace

AttendChoice choose_attend_kernel(DType dtype, std::int64_t head_dim, int block_size,
                                  bool has_plan) {
  AttendChoice c;
  if (!compiled(dtype, head_dim) || (block_size != 64 && block_size != 128)) return c;
  c.family = KernelFamily::kSm80Mma;
#ifdef PROXYATTN_HAVE_SM90A
  if (block_size != 128 || !device_is_sm90()) return c;
  const std::string want = attend_override();
  const bool asked = want.rfind("sm90", 0) == 0;
  if (want == "sm80" || (!asked && !kSm90ByDefault)) return c;
  c.family = KernelFamily::kSm90Wgmma;
  c.variant = has_plan ? Sm90Variant::kPersistent : Sm90Variant::kOneTile;
  if (want == "sm90_one_tile") c.variant = Sm90Variant::kOneTile;
  if (want == "sm90_persistent") c.variant = Sm90Variant::kPersistent;
  if (dtype == DType::kBFloat16) {
    if (want == "sm90_more_stages") c.variant = Sm90Variant::kMoreStages;
    if (want == "sm90_pingpong") c.variant = Sm90Variant::kPingPong;
  }
#else
  (void)has_plan;
#endif
  return c;
}

KernelFamily attend_kernel_for(DType dtype, std::int64_t head_dim, int block_size) {
  return choose_attend_kernel(dtype, head_dim, block_size).family;
}

namespace {

/// The sm_90a kernel's TMA descriptors view q, k and v as (head_dim, heads, tokens), strides
/// growing outward; a tensor whose head stride exceeds its token stride (a [heads, tokens,
/// head_dim] view, say) runs on the sm_80 kernel instead, which takes any strides.
bool tma_layout_ok(const AttendParams& p) {
  auto ok = [](std::int64_t heads, std::int64_t stride_h, std::int64_t stride_n) {
    return heads <= 1 || stride_h <= stride_n;
  };
  return ok(p.num_qo_heads, p.q_stride_h, p.q_stride_n) &&
         ok(p.num_kv_heads, p.k_stride_h, p.k_stride_n) &&
         ok(p.num_kv_heads, p.v_stride_h, p.v_stride_n);
}

}  // namespace

void dispatch_attend(DType dtype, std::int64_t head_dim, int block_size, const AttendParams& p,
                     int grid_rows, void* stream) {
  AttendChoice choice = choose_attend_kernel(dtype, head_dim, block_size, p.group_order != nullptr);
  if (choice.family == KernelFamily::kSm90Wgmma && !tma_layout_ok(p)) {
    choice.family = KernelFamily::kSm80Mma;
  }
  dispatch_dtype_head_dim(dtype, head_dim, [&](auto tag, auto hd) {
    using T = typename decltype(tag)::type;
    constexpr int kHeadDim = decltype(hd)::value;
    if constexpr (has_inst<T, kHeadDim>()) {
      const cudaStream_t s = to_stream(stream);
      if (choice.family == KernelFamily::kSm90Wgmma) {
        constexpr int kStages = Sm90Config<kHeadDim>::kStages;
        if constexpr (std::is_same<T, __nv_bfloat16>::value) {
          constexpr int kMore = Sm90Config<kHeadDim>::kMoreStages;
          if (choice.variant == Sm90Variant::kMoreStages) {
            return launch_attend_sm90<T, kHeadDim, kMore, false, false>(p, grid_rows, s);
          }
          if (choice.variant == Sm90Variant::kPingPong) {
            return launch_attend_sm90<T, kHeadDim, kStages, true, false>(p, grid_rows, s);
          }
        }
        if (choice.variant == Sm90Variant::kPersistent) {
          return launch_attend_sm90<T, kHeadDim, kStages, false, true>(p, grid_rows, s);
        }
        return launch_attend_sm90<T, kHeadDim, kStages, false, false>(p, grid_rows, s);
      }
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
