// src/cpu/kernels/dispatch.cc: which micro-kernels this processor runs. cpuid + xgetbv decide
// once per process; PROXYATTN_CPU_ISA forces a tier (for tests and benchmarks). Baseline code:
// no ISA-specific instructions here.
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "cpu/kernels/kernels.h"
#include "common/check.h"

namespace proxyattn::cpu::kernels {

namespace {

std::uint64_t read_xcr0() {
  std::uint32_t lo = 0, hi = 0;
  __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

// Linux keeps AMX tile data off until the process asks (ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA).
bool request_amx_permission() {
#if defined(__linux__) && defined(SYS_arch_prctl)
  constexpr long kArchReqXcompPerm = 0x1023;
  constexpr long kXfeatureXtiledata = 18;
  return syscall(SYS_arch_prctl, kArchReqXcompPerm, kXfeatureXtiledata) == 0;
#else
  return false;
#endif
}

CpuFeatures detect() {
  CpuFeatures f;
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = (c >> 27) & 1u;
  if (!osxsave) return f;
  const std::uint64_t xcr0 = read_xcr0();
  // XCR0: SSE (1), AVX (2), opmask (5), ZMM_Hi256 (6), Hi16_ZMM (7); tiles: XTILECFG (17),
  // XTILEDATA (18).
  const bool os_zmm = (xcr0 & 0xE6u) == 0xE6u;
  const bool os_tiles = ((xcr0 >> 17) & 3u) == 3u;
  if (__get_cpuid_max(0, nullptr) < 7) return f;
  __cpuid_count(7, 0, a, b, c, d);
  const bool avx512f = (b >> 16) & 1u, avx512dq = (b >> 17) & 1u, avx512bw = (b >> 30) & 1u,
             avx512vl = (b >> 31) & 1u;
  const bool amx_bf16 = (d >> 22) & 1u, amx_tile = (d >> 24) & 1u;
  unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
  __cpuid_count(7, 1, a1, b1, c1, d1);
  const bool avx512_bf16 = (a1 >> 5) & 1u;
  f.avx512 = os_zmm && avx512f && avx512dq && avx512bw && avx512vl;
  f.avx512_bf16 = f.avx512 && avx512_bf16;
  f.amx = f.avx512_bf16 && amx_bf16 && amx_tile && os_tiles && request_amx_permission();
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx512: return f.avx512;
    case Isa::kAvx512Bf16: return f.avx512_bf16;
    case Isa::kAmx: return f.amx;
  }
  return false;
}

Isa best_isa() {
  for (Isa isa : {Isa::kAmx, Isa::kAvx512Bf16, Isa::kAvx512}) {
    if (isa_supported(isa)) return isa;
  }
  return Isa::kScalar;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx512: return "avx512";
    case Isa::kAvx512Bf16: return "avx512bf16";
    case Isa::kAmx: return "amx";
  }
  return "unknown";
}

Isa active_isa() {
  const char* env = std::getenv("PROXYATTN_CPU_ISA");
  if (env == nullptr || env[0] == '\0') return best_isa();
  for (Isa isa : {Isa::kScalar, Isa::kAvx512, Isa::kAvx512Bf16, Isa::kAmx}) {
    if (std::strcmp(env, isa_name(isa)) == 0) {
      PROXYATTN_CHECK(isa_supported(isa), "PROXYATTN_CPU_ISA = ", env,
                      ": this processor lacks it (supported: up to ", isa_name(best_isa()), ")");
      return isa;
    }
  }
  PROXYATTN_FAIL("PROXYATTN_CPU_ISA = ", env, ", expected scalar, avx512, avx512bf16 or amx");
}

AttendKernel attend_kernel(Isa isa, bool bf16) {
  AttendKernel k;
  k.isa = isa;
  switch (isa) {
    case Isa::kScalar:
      k.name = "scalar";
      return k;
    case Isa::kAvx512:
      k.layout = PackLayout::kFp32;
      k.attend = attend_avx512_fp32;
      k.name = "avx512-fma";
      return k;
    case Isa::kAvx512Bf16:
    case Isa::kAmx:  // attention keeps vdpbf16ps on AMX machines (no tile kernel yet)
      if (!bf16) {
        k.layout = PackLayout::kFp32;
        k.attend = attend_avx512_fp32;
        k.name = "avx512-fma";
      } else {
        k.layout = PackLayout::kBf16Pairs;
        k.attend = attend_avx512bf16;
        k.name = "avx512-dpbf16";
      }
      return k;
  }
  return k;
}

PoolFn pool_kernel(Isa isa) { return isa == Isa::kScalar ? nullptr : pool_rows_avx512; }

StatsFn stats_kernel(Isa isa, bool bf16_pairs) {
  if (isa == Isa::kScalar) return nullptr;
  if (bf16_pairs) return isa == Isa::kAvx512 ? nullptr : logit_stats_avx512bf16;
  return logit_stats_avx512_fp32;
}

}  // namespace proxyattn::cpu::kernels
