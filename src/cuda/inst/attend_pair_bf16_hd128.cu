// Written by hand, not by scripts/gen_instantiations.py: the kGqaPair attention variant
// (dispatch.h, AttendVariant), hd128 only, to keep compile time down.
#include "cuda/launch.cuh"

namespace proxyattn::cuda {

template void launch_attend_pair<__nv_bfloat16, 128, 64>(const AttendParams&, int, cudaStream_t);
template void launch_attend_pair<__nv_bfloat16, 128, 128>(const AttendParams&, int, cudaStream_t);

}  // namespace proxyattn::cuda
