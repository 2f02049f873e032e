// Written by hand, not by scripts/gen_instantiations.py: the kKeyTile64 attention variant
// (dispatch.h, AttendVariant), hd128 x block 128 only, to keep compile time down.
#include "cuda/launch.cuh"

namespace proxyattn::cuda {

template void launch_attend<__half, 128, 128, 64>(const AttendParams&, int, cudaStream_t);

}  // namespace proxyattn::cuda
