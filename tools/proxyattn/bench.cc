// tools/proxyattn/bench.cc: `proxyattn bench`, dense and ProxyAttn timed on the same inputs.
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <thread>

#include "proxyattn/cpu.h"
#include "tools/proxyattn/cli.h"

namespace proxyattn::cli {

namespace {

// Median wall time of `repeats` calls of fn, in milliseconds; the device is synchronized.
template <typename Fn>
double time_ms(int repeats, const Runtime& runtime, Device device, Fn fn) {
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    synchronize(device, runtime);
    const auto start = std::chrono::steady_clock::now();
    fn();
    synchronize(device, runtime);
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

// CPU seconds of the whole process (all threads).
double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// max and min that keep NaN: std::max(a, NaN) returns a and would hide a NaN from the report.
double nan_max(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::max(a, b); }
double nan_min(double a, double b) { return std::isnan(a) || std::isnan(b) ? NAN : std::min(a, b); }

struct Quality {
  double recall = 1.0, recall_min_head = 1.0, rel_error = 0.0;
};

// docs/SPEC.md section 4: recall over rows whose selection is incomplete, and the output error.
Quality measure(const Inputs& in, const HostPlan& hp, const RunOutput& sparse, const RunOutput& dense) {
  const testing::Workload& w = in.host;
  const PlanLayout& l = hp.plan.layout;
  const std::int64_t H = w.spec.num_qo_heads, D = w.spec.head_dim, T = w.total_tokens;
  const std::vector<float> lse_s = to_host_vector<float>(sparse.lse),
                           lse_d = to_host_vector<float>(dense.lse);
  const std::vector<std::uint8_t> o_s = sparse.o.to_host(), o_d = dense.o.to_host();
  Quality q;
  double recall_sum = 0.0;
  std::int64_t recall_rows = 0;
  for (std::int64_t h = 0; h < H; ++h) {
    double head_sum = 0.0, diff2 = 0.0, ref2 = 0.0;
    std::int64_t head_rows = 0;
    for (std::int64_t i = 0; i < l.batch; ++i) {
      for (std::int64_t t = l.cu_seqlens[i]; t < l.cu_seqlens[i + 1]; ++t) {
        const std::int64_t m = (t - l.cu_seqlens[i]) / l.block_size;
        if (hp.plan.counts[l.head_index(i, h, m)] < m + 1) {
          const double r = std::exp(static_cast<double>(lse_s[h * T + t]) - lse_d[h * T + t]);
          head_sum += r;
          ++head_rows;
        }
        for (std::int64_t d = 0; d < D; ++d) {
          const std::int64_t e = (t * H + h) * D + d;
          const double x = load_element(o_s.data(), w.spec.dtype, e),
                       y = load_element(o_d.data(), w.spec.dtype, e);
          diff2 += (x - y) * (x - y);
          ref2 += y * y;
        }
      }
    }
    if (head_rows > 0) q.recall_min_head = nan_min(q.recall_min_head, head_sum / static_cast<double>(head_rows));
    recall_sum += head_sum;
    recall_rows += head_rows;
    q.rel_error = nan_max(q.rel_error, ref2 > 0 ? std::sqrt(diff2 / ref2) : std::sqrt(diff2));
  }
  if (recall_rows > 0) q.recall = recall_sum / static_cast<double>(recall_rows);
  return q;
}

}  // namespace

int run_bench(const CommonOptions& o, int repeats) {
  const Config config = o.config();
  Inputs in;
  load_inputs(o, in);
  const Runtime runtime = o.runtime();
  const CuSeqlens seqlens = in.host.seqlens();
  RunOutput dense_out(in), sparse_out(in);
  const ProblemShape shape = problem_shape(in.q(), in.k(), seqlens);
  Buffer ws(workspace_size(shape, config), in.device);

  progress("dense attention");
  const double dense_cpu0 = process_cpu_seconds();
  const double dense_ms = time_ms(repeats, runtime, in.device, [&] {
    dense(in.q(), in.k(), in.v(), seqlens, dense_out.o_view, &dense_out.lse_view, config.scale, runtime);
  });
  const double dense_cpu_s = process_cpu_seconds() - dense_cpu0;
  progress("plan");
  Plan p;
  const double plan_ms = time_ms(repeats, runtime, in.device, [&] {
    p = plan(in.q(), in.k(), seqlens, config, ws.workspace(), runtime);
  });
  progress("attend");
  const double attend_ms = time_ms(repeats, runtime, in.device, [&] {
    attend(in.q(), in.k(), in.v(), p, sparse_out.o_view, &sparse_out.lse_view, runtime);
  });
  progress("prefill");
  const double proxy_ms = time_ms(repeats, runtime, in.device, [&] {
    p = prefill(in.q(), in.k(), in.v(), seqlens, config, ws.workspace(), sparse_out.o_view,
                &sparse_out.lse_view, runtime);
  });
  progress("");
  const HostPlan hp = copy_to_host(p);
  const Plan::Stats stats = hp.plan.stats();
  const Quality q = measure(in, hp, sparse_out, dense_out);
  const int threads = in.device == Device::kCPU ? (o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency())) : 0;
  const double speedup = dense_ms / proxy_ms;

  std::printf("proxyattn bench: %s, heads %lld/%lld, head_dim %lld, %s on %s",
              in.description.c_str(), static_cast<long long>(in.host.spec.num_qo_heads),
              static_cast<long long>(in.host.spec.num_kv_heads),
              static_cast<long long>(in.host.spec.head_dim), to_string(in.host.spec.dtype),
              o.backend.c_str());
  if (in.device == Device::kCPU) std::printf(", %d threads", threads);
  std::printf(", median of %d\n", repeats);
  std::printf("config: block %d, stride %d, gamma %g, proxy heads %d, min budget %lld, last block %s%s\n",
              config.block_size, config.stride, config.gamma, config.num_proxy_heads,
              static_cast<long long>(config.min_budget_tokens), to_string(config.last_block_selection),
              config.forced_density > 0 ? (", forced density " + std::to_string(config.forced_density)).c_str() : "");
  std::printf("  %-22s %12s\n", "stage", "ms");
  std::printf("  %-22s %12.2f\n", "dense", dense_ms);
  std::printf("  %-22s %12.2f\n", "plan", plan_ms);
  std::printf("  %-22s %12.2f\n", "attend", attend_ms);
  std::printf("  %-22s %12.2f   speedup %.2fx\n", "prefill (plan+attend)", proxy_ms, speedup);
  std::printf("  density %.4f   recall %.4f (min head %.4f)   rel_error %.4g\n",
              stats.density_weighted, q.recall, q.recall_min_head, q.rel_error);
  // CPU: the instruction peak measured in this process, and dense's useful rate against it
  // (4 d FLOP per causal (query, key) pair).
  CpuInfo cpu;
  double peak_gflops = 0.0, amx_peak_gflops = 0.0, dense_gflops = 0.0, dense_cpu_gflops = 0.0;
  if (in.device == Device::kCPU) {
    cpu = cpu_info();
    peak_gflops = cpu_peak_gflops(in.host.spec.dtype, threads);
    if (cpu.has_amx) amx_peak_gflops = cpu_amx_peak_gflops(threads);
    double pairs = 0.0;
    for (std::size_t i = 0; i + 1 < in.host.cu_seqlens.size(); ++i) {
      const double n = in.host.cu_seqlens[i + 1] - in.host.cu_seqlens[i];
      pairs += n * (n + 1) / 2;
    }
    const double flop = 4.0 * in.host.spec.head_dim * in.host.spec.num_qo_heads * pairs;
    dense_gflops = flop / (dense_ms * 1e6);
    // The same per second of CPU time per thread: what the cores did while they ran (the peak is
    // measured that way), unaffected by other work sharing the machine.
    dense_cpu_gflops = flop * repeats / (dense_cpu_s / std::max(threads, 1) * 1e9);
    std::printf("  cpu %s, isa %s (%s): dense %.1f GFLOP/s = %.1f%% of the measured peak %.1f",
                cpu.model.c_str(), cpu.isa.c_str(),
                in.host.spec.dtype == DType::kBFloat16 ? cpu.bf16_kernel.c_str() : cpu.fp32_kernel.c_str(),
                dense_gflops, peak_gflops > 0 ? 100.0 * dense_gflops / peak_gflops : 0.0, peak_gflops);
    if (cpu.has_amx) std::printf(", AMX peak %.1f", amx_peak_gflops);
    std::printf("; per CPU second %.1f GFLOP/s = %.1f%%\n", dense_cpu_gflops,
                peak_gflops > 0 ? 100.0 * dense_cpu_gflops / peak_gflops : 0.0);
  }
  if (o.json) {
    nlohmann::json j;
    j["dense_ms"] = dense_ms;
    j["plan_ms"] = plan_ms;
    j["attend_ms"] = attend_ms;
    j["proxy_ms"] = proxy_ms;
    j["speedup"] = speedup;
    j["density"] = stats.density_weighted;
    j["recall"] = q.recall;
    j["recall_min_head"] = q.recall_min_head;
    j["rel_error"] = q.rel_error;
    j["seq_len"] = in.host.total_tokens;
    j["backend"] = o.backend;
    j["dtype"] = to_string(in.host.spec.dtype);
    j["threads"] = threads;
    j["repeats"] = repeats;
    j["density_per_head"] = stats.density;
    if (in.device == Device::kCPU) {
      j["cpu"] = cpu.model;
      j["isa"] = cpu.isa;
      j["peak_gflops"] = peak_gflops;
      j["dense_gflops"] = dense_gflops;
      j["dense_cpu_gflops"] = dense_cpu_gflops;
      if (cpu.has_amx) j["amx_peak_gflops"] = amx_peak_gflops;
    }
    std::cout << j.dump() << std::endl;
  }
  return 0;
}

}  // namespace proxyattn::cli
