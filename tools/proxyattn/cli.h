// tools/proxyattn/cli.h: shared pieces of the proxyattn command line (SPEC.md section 5).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proxyattn/proxyattn.h"
#include "testing/workload.h"

namespace proxyattn::cli {

/// \brief Flags every subcommand shares: config, run and input flags.
struct CommonOptions {
  // Config flags (SPEC.md section 2), in tokens where SPEC.md says so.
  int block = 128, stride = 4, proxy_heads = 1;
  double gamma = 0.95;
  std::int64_t min_budget = 2048, max_budget = -1, dense_below = -1;
  std::string keep_sink = "true", keep_diagonal = "true", last_block = "exact";
  double density = 0.0;  // forced; 0 = off
  // Run flags.
  std::string backend = "cpu", dtype;  // dtype: fp32 on cpu, bf16 on cuda
  int threads = 0;
  std::uint64_t seed = 0;
  bool json = false;
  bool check_finite = false;
  Runtime runtime() const { return Runtime{threads, nullptr, check_finite}; }
  // Input flags.
  std::int64_t seq_len = 8192, heads = 8, kv_heads = 2, head_dim = 128;
  std::string workload = "structured", input;
  bool last_block_given = false;

  void add_to(CLI::App& app);
  Config config() const;
  Device device() const;
  DType resolved_dtype() const;
};

/// \brief The inputs of a run, on the host, and (for cuda) mirrored on the device.
struct Inputs {
  testing::Workload host;
  Device device = Device::kCPU;
  void* q_dev = nullptr;
  void* k_dev = nullptr;
  void* v_dev = nullptr;
  std::string description;

  Inputs() = default;
  Inputs(const Inputs&) = delete;
  Inputs& operator=(const Inputs&) = delete;
  ~Inputs();
  TensorView q() const;
  TensorView k() const;
  TensorView v() const;
};

/// \brief Loads --input or generates the workload, converted to the run's dtype.
void load_inputs(const CommonOptions& o, Inputs& in);

/// \brief Device (or host) memory for outputs and workspaces of one run.
struct DeviceBuffer {
  DeviceBuffer(std::size_t bytes, Device device);
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data = nullptr;
  std::size_t size = 0;
  Device device;
  testing::Buffer host;
  Workspace workspace() const { return Workspace{data, size, device, 0}; }
  /// Copies to a host vector of T (synchronizes).
  template <typename T>
  std::vector<T> to_host() const;
};

/// \brief out [tokens, heads, head_dim] and lse [heads, tokens] of a run.
struct RunOutput {
  RunOutput(const Inputs& in);
  DeviceBuffer o, lse;
  TensorView o_view, lse_view;
};

/// \brief Writes the selected blocks of the listed heads of sequence 0 as a PNG heatmap.
void write_plan_png(const std::string& path, const Plan& plan, const std::vector<int>& heads);
/// \brief Writes density per head as a bar chart PNG (grid lines at 0.25 steps).
void write_density_png(const std::string& path, const std::vector<float>& density);
/// \brief Writes an RGB image [height, width, 3] as a PNG file.
void write_rgb_png(const std::string& path, std::int64_t width, std::int64_t height,
                   const std::vector<std::uint8_t>& image);

int run_bench(const CommonOptions& o, int repeats);
int run_check(const CommonOptions& o);
int run_plan(const CommonOptions& o, const std::string& png, const std::string& show_heads,
             const std::string& density_png);

/// \brief Progress to stderr, only when stderr is a terminal.
void progress(const std::string& message);

}  // namespace proxyattn::cli
