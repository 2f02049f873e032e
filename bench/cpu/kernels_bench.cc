// bench/cpu/kernels_bench.cc: Google Benchmark programs for the CPU attention kernels. Every
// attention row reports useful GFLOP/s (4 d FLOP per unmasked (query, key) pair, causal half
// counted) and its share of the in-process AVX-512 peak for its dtype (proxyattn/cpu.h), measured
// once at start-up in the same process.
//
// Run: ./build/bench/cpu/kernels_bench [--benchmark_filter=Dense] [--benchmark_min_time=2]
//   Peak/<dtype>/<threads>                 the instruction peak loop alone
//   Dense/<dtype>/<N>/<threads>            dense causal attention, 32/8 heads, head_dim 128
//   Sparse/<dtype>/<N>/<density %>         forced random block masks, 2 threads
#include <benchmark/benchmark.h>

#include <time.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <utility>

#include "proxyattn/cpu.h"
#include "proxyattn/oracle/workload.h"
#include "proxyattn/proxyattn.h"

namespace {

using proxyattn::DType;

constexpr std::int64_t kHeads = 32, kKvHeads = 8, kHeadDim = 128;

DType dtype_of(std::int64_t i) { return i == 0 ? DType::kFloat32 : DType::kBFloat16; }

double peak(DType dtype, int threads) {
  static std::map<std::pair<int, int>, double> cache;
  const auto key = std::make_pair(static_cast<int>(dtype), threads);
  auto it = cache.find(key);
  if (it == cache.end()) it = cache.emplace(key, proxyattn::cpu_peak_gflops(dtype, threads, 0.5)).first;
  return it->second;
}

const proxyattn::testing::Workload& workload(DType dtype, std::int64_t n) {
  static std::map<std::pair<int, std::int64_t>, proxyattn::testing::Workload> cache;
  const auto key = std::make_pair(static_cast<int>(dtype), n);
  auto it = cache.find(key);
  if (it == cache.end()) {
    it = cache.emplace(key, proxyattn::testing::make_workload(
                                {static_cast<std::int32_t>(n)}, kHeads, kKvHeads, kHeadDim, dtype,
                                proxyattn::testing::WorkloadKind::kRandom, 7))
             .first;
  }
  return it->second;
}

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// GFLOPs: useful FLOP per wall second. GFLOPs_cpu: useful FLOP per (process CPU seconds /
// threads), the rate the cores reached while they ran (on a machine shared with other work the
// wall rate drops, this one does not; it ignores idle tails of the thread pool). peak_GFLOPs:
// cpu_peak_gflops for the dtype and thread count (per thread CPU second, summed); share_cpu =
// GFLOPs_cpu / peak_GFLOPs.
void report(benchmark::State& state, double flop, DType dtype, int threads, double cpu_s) {
  state.counters["GFLOPs"] = benchmark::Counter(flop * 1e-9, benchmark::Counter::kIsIterationInvariantRate);
  const double iters = static_cast<double>(state.iterations());
  const double rate_cpu = flop * iters / (cpu_s / threads) * 1e-9;
  state.counters["cpu_ms"] = cpu_s / threads / iters * 1e3;  // per call
  const double p = peak(dtype, threads);
  state.counters["GFLOPs_cpu"] = rate_cpu;
  state.counters["peak_GFLOPs"] = p;
  state.counters["share_cpu"] = p > 0 ? rate_cpu / p : 0.0;
  state.SetLabel(proxyattn::cpu_info().isa);
}

void BM_Peak(benchmark::State& state) {
  const DType dtype = dtype_of(state.range(0));
  const int threads = static_cast<int>(state.range(1));
  double g = 0.0;
  for (auto _ : state) g = proxyattn::cpu_peak_gflops(dtype, threads, 0.3);
  state.counters["GFLOPs"] = g;
}
BENCHMARK(BM_Peak)->ArgsProduct({{0, 1}, {1, 2}})->Iterations(1)->Unit(benchmark::kMillisecond);

// Useful FLOP of causal attention over N tokens: 4 d per (t, u <= t).
double causal_flop(std::int64_t n) {
  return 4.0 * kHeadDim * kHeads * (static_cast<double>(n) * (n + 1) / 2);
}

void BM_Dense(benchmark::State& state) {
  const DType dtype = dtype_of(state.range(0));
  const std::int64_t n = state.range(1);
  const int threads = static_cast<int>(state.range(2));
  const auto& w = workload(dtype, n);
  proxyattn::testing::Output out = proxyattn::testing::make_output(w);
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    proxyattn::dense(w.q_view(), w.k_view(), w.v_view(), w.seqlens(), out.o_view, &out.lse_view,
                     0.0f, proxyattn::Runtime{threads});
  }
  report(state, causal_flop(n), dtype, threads, process_cpu_seconds() - cpu0);
}
BENCHMARK(BM_Dense)
    ->ArgsProduct({{0, 1}, {4096, 8192, 16384}, {1, 2}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Sparse(benchmark::State& state) {
  const DType dtype = dtype_of(state.range(0));
  const std::int64_t n = state.range(1);
  const double density = static_cast<double>(state.range(2)) / 100.0;
  const auto& w = workload(dtype, n);
  proxyattn::testing::Buffer ws;
  const proxyattn::Plan plan = proxyattn::testing::random_mask_plan(w.shape(), 128, density, 3, ws);
  proxyattn::testing::Output out = proxyattn::testing::make_output(w);
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    proxyattn::attend(w.q_view(), w.k_view(), w.v_view(), plan, out.o_view, &out.lse_view,
                      proxyattn::Runtime{2});
  }
  double realized = 0.0;  // mean over heads of the selected share of causal blocks
  for (std::int64_t h = 0; h < kHeads; ++h) realized += plan.density[h] / kHeads;
  state.counters["density"] = realized;
  report(state, causal_flop(n) * realized, dtype, 2, process_cpu_seconds() - cpu0);
}
BENCHMARK(BM_Sparse)
    ->ArgsProduct({{1}, {8192, 16384}, {100, 30, 10, 5}})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The plan stages (proxy scores, block scores, budgets, selection) at the default Config.
void BM_Plan(benchmark::State& state) {
  const DType dtype = dtype_of(state.range(0));
  const std::int64_t n = state.range(1);
  const auto& w = workload(dtype, n);
  proxyattn::Config config;
  proxyattn::testing::Buffer ws(proxyattn::workspace_size(w.shape(), config));
  const double cpu0 = process_cpu_seconds();
  for (auto _ : state) {
    benchmark::DoNotOptimize(proxyattn::plan(w.q_view(), w.k_view(), w.seqlens(), config,
                                             ws.workspace(), proxyattn::Runtime{2}));
  }
  // Per call, process CPU seconds / 2 threads: compare with Dense/<dtype>/<N>/2's cpu_ms.
  state.counters["cpu_ms"] =
      (process_cpu_seconds() - cpu0) / 2 / static_cast<double>(state.iterations()) * 1e3;
}
BENCHMARK(BM_Plan)->ArgsProduct({{0, 1}, {4096, 8192, 16384}})->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
