// src/cpu/kernels/peak.cc: the public CPU information and in-process peak benchmark
// (proxyattn/cpu.h). Baseline code; the loops themselves live in the ISA units.
#include <cpuid.h>

#include <atomic>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "common/check.h"
#include "cpu/kernels/kernels.h"
#include "proxyattn/cpu.h"

namespace proxyattn {

namespace {

std::string brand_string() {
  unsigned regs[12] = {};
  unsigned max_ext = __get_cpuid_max(0x80000000u, nullptr);
  if (max_ext < 0x80000004u) return "unknown x86-64";
  for (unsigned i = 0; i < 3; ++i) {
    __get_cpuid(0x80000002u + i, &regs[4 * i], &regs[4 * i + 1], &regs[4 * i + 2], &regs[4 * i + 3]);
  }
  char text[49] = {};
  std::memcpy(text, regs, 48);
  std::string s(text);
  const auto first = s.find_first_not_of(' ');
  const auto last = s.find_last_not_of(' ');
  return first == std::string::npos ? "unknown x86-64" : s.substr(first, last - first + 1);
}

// Runs loop(seconds) on `threads` threads at once (the caller is one of them) and sums the rates.
double concurrent_rate(double (*loop)(double), int threads, double seconds) {
  PROXYATTN_CHECK(threads >= 1, "threads = ", threads, ", expected >= 1");
  PROXYATTN_CHECK(seconds > 0.0 && seconds <= 60.0, "seconds = ", seconds, ", expected (0, 60]");
  std::vector<double> rates(threads, 0.0);
  std::atomic<int> ready{0};
  auto body = [&](int t) {
    ready.fetch_add(1);
    while (ready.load() < threads) {
    }
    loop(0.1);  // warm-up: clock ramp
    rates[t] = loop(seconds);
  };
  std::vector<std::thread> pool;
  pool.reserve(threads - 1);
  try {
    for (int t = 1; t < threads; ++t) pool.emplace_back(body, t);
  } catch (const std::system_error& e) {
    const int started = static_cast<int>(pool.size()) + 1;
    ready.fetch_add(threads - started);  // release the started ones
    for (std::thread& th : pool) th.join();
    PROXYATTN_FAIL("threads = ", threads, ": could start only ", started, " (", e.what(), ")");
  }
  body(0);
  for (std::thread& th : pool) th.join();
  double total = 0.0;
  for (double r : rates) total += r;
  return total;
}

}  // namespace

CpuInfo cpu_info() {
  using cpu::kernels::Isa;
  const cpu::kernels::CpuFeatures& f = cpu::kernels::cpu_features();
  CpuInfo info;
  info.model = brand_string();
  const Isa isa = cpu::kernels::active_isa();
  info.isa = cpu::kernels::isa_name(isa);
  info.best_isa = cpu::kernels::isa_name(cpu::kernels::best_isa());
  info.has_avx512 = f.avx512;
  info.has_avx512_bf16 = f.avx512_bf16;
  info.has_amx = f.amx;
  const unsigned hw = std::thread::hardware_concurrency();
  info.hardware_threads = hw == 0 ? 1 : static_cast<int>(hw);
  info.bf16_kernel = cpu::kernels::attend_kernel(isa, true).name;
  info.fp32_kernel = cpu::kernels::attend_kernel(isa, false).name;
  return info;
}

double cpu_peak_gflops(DType dtype, int threads, double seconds) {
  const cpu::kernels::CpuFeatures& f = cpu::kernels::cpu_features();
  PROXYATTN_CHECK(dtype == DType::kFloat32 || dtype == DType::kBFloat16, "dtype = ",
                  to_string(dtype), ", expected fp32 or bf16 (the CPU dtypes)");
  if (!f.avx512) return 0.0;
  if (dtype == DType::kBFloat16 && f.avx512_bf16) {
    return concurrent_rate(cpu::kernels::peak_avx512bf16_loop, threads, seconds);
  }
  return concurrent_rate(cpu::kernels::peak_avx512_fp32_loop, threads, seconds);
}

double cpu_amx_peak_gflops(int threads, double seconds) {
  if (!cpu::kernels::cpu_features().amx) return 0.0;
  return concurrent_rate(cpu::kernels::peak_amx_bf16_loop, threads, seconds);
}

}  // namespace proxyattn
