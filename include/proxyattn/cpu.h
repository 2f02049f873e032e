// proxyattn/cpu.h: what the CPU backend runs on this processor, and the processor's measured
// peak for the instructions it uses, so CPU benchmarks report ratios measured in the same process.
#pragma once

#include <string>

#include "proxyattn/types.h"

namespace proxyattn {

/// \brief The processor and the instruction tier the CPU kernels run.
struct CpuInfo {
  std::string model;     ///< cpuid brand string, e.g. "AMD EPYC 9R45"
  std::string isa;       ///< tier the kernels run now: "scalar", "avx512", "avx512bf16" or "amx"
  std::string best_isa;  ///< best tier this machine supports
  bool has_avx512 = false;       ///< AVX-512 F/BW/VL/DQ with OS support
  bool has_avx512_bf16 = false;  ///< AVX512-BF16 (vdpbf16ps)
  bool has_amx = false;          ///< AMX-TILE + AMX-BF16, OS tile state and permission
  int hardware_threads = 0;
  /// \brief Kernel the attention of each dtype runs: "avx512-dpbf16", "avx512-fma" or "scalar".
  std::string bf16_kernel, fp32_kernel;
};

/// \brief Detects the processor once; `isa` honours the environment variable PROXYATTN_CPU_ISA
/// (scalar|avx512|avx512bf16|amx) as the kernels do. Throws Error if it names an unknown tier or
/// one this processor lacks.
CpuInfo cpu_info();

/// \brief Measured AVX-512 peak in GFLOP/s for the instruction the dtype's kernel multiplies with:
/// vdpbf16ps (64 FLOP per zmm instruction) for bf16 where AVX512-BF16 exists, else fp32 FMA
/// (32 FLOP per zmm). `threads` loops of 24 independent register accumulators run at once for
/// `seconds` of each thread's CPU time after a warm-up, and their rates (FLOP per second of
/// thread CPU time, which equals wall time on an otherwise idle machine and is not lowered by
/// other work sharing the cores) are summed. 0 without AVX-512. Throws Error for threads < 1 or a
/// thread the machine cannot start.
double cpu_peak_gflops(DType dtype, int threads, double seconds = 0.3);

/// \brief Measured AMX peak (tdpbf16ps, 16 x 16 x 32 per instruction) in GFLOP/s over `threads`
/// concurrent loops; 0 where AMX is absent.
double cpu_amx_peak_gflops(int threads, double seconds = 0.3);

}  // namespace proxyattn
