// tests/testing/env.h: what the CPU test suites read from their environment: the test level
// (PROXYATTN_TEST_LEVEL=full widens sweeps) and the kernel tier (PROXYATTN_CPU_ISA), set for one
// scope to run a case on each tier this machine has.
#pragma once

#include <cstdlib>
#include <string>
#include <vector>

#include "proxyattn/cpu.h"

namespace proxyattn::testing {

/// \brief PROXYATTN_TEST_LEVEL=full: the wide sweeps (the default, quick, keeps CI short).
inline bool full_level() {
  const char* level = std::getenv("PROXYATTN_TEST_LEVEL");
  return level != nullptr && std::string(level) == "full";
}

/// \brief The kernel tiers this machine runs, weakest first; "amx" (which runs the vdpbf16ps
/// kernels) only when with_amx.
inline std::vector<std::string> machine_tiers(bool with_amx = true) {
  const CpuInfo info = cpu_info();
  std::vector<std::string> tiers{"scalar"};
  if (info.has_avx512) tiers.push_back("avx512");
  if (info.has_avx512_bf16) tiers.push_back("avx512bf16");
  if (with_amx && info.has_amx) tiers.push_back("amx");
  return tiers;
}

/// \brief Sets PROXYATTN_CPU_ISA for one scope, restoring the previous value after.
class ScopedIsa {
 public:
  explicit ScopedIsa(const std::string& isa) {
    const char* old = std::getenv("PROXYATTN_CPU_ISA");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("PROXYATTN_CPU_ISA", isa.c_str(), 1);
  }
  ~ScopedIsa() {
    if (had_) {
      setenv("PROXYATTN_CPU_ISA", old_.c_str(), 1);
    } else {
      unsetenv("PROXYATTN_CPU_ISA");
    }
  }
  ScopedIsa(const ScopedIsa&) = delete;
  ScopedIsa& operator=(const ScopedIsa&) = delete;

 private:
  bool had_ = false;
  std::string old_;
};

}  // namespace proxyattn::testing
