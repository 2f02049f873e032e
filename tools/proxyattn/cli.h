// tools/proxyattn/cli.h: shared pieces of the proxyattn command line (docs/SPEC.md section 5).
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <cstring>
#include <sstream>
#include <utility>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "proxyattn/proxyattn.h"
#include "proxyattn/oracle/workload.h"

namespace proxyattn::cli {

/// \brief Flags every subcommand shares: config, run and input flags.
struct CommonOptions {
  // Config flags, one per entry of config_fields() (docs/SPEC.md section 2), as given text;
  // fields whose flag was not given keep Config's default.
  std::vector<std::pair<std::string, std::string>> config_text;  // (field name, text)
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
  CLI::App* app = nullptr;

  void add_to(CLI::App& app);
  Config config() const;
  Device device() const;
  DType resolved_dtype() const;
};

/// \brief The inputs of a run, on the host, and (for cuda) mirrored on the device.
struct Inputs {
  testing::Workload host;
  Device device = Device::kCPU;
  Buffer q_dev, k_dev, v_dev;  // device mirrors of host.q/k/v (empty on the CPU)
  std::string description;

  TensorView q() const;
  TensorView k() const;
  TensorView v() const;
};

/// \brief Loads --input or generates the workload, converted to the run's dtype.
void load_inputs(const CommonOptions& o, Inputs& in);


/// \brief Strict integer flag: the whole text is a decimal integer in [lo, hi] (no sign for
/// lo >= 0, no spaces, no suffix), else proxyattn::Error naming the flag, the (cut, escaped)
/// text and the range.
std::int64_t parse_int_flag(const std::string& flag, const std::string& text, std::int64_t lo,
                            std::int64_t hi);
/// \brief Strict unsigned 64-bit flag (digits only; 0 .. 2^64-1).
std::uint64_t parse_u64_flag(const std::string& flag, const std::string& text);

/// \brief Throws proxyattn::Error with the streamed message (the CLI's own checks).
template <typename... Args>
[[noreturn]] void fail(const Args&... args) {
  throw error_of(args...);
}

/// \brief Host vector of T holding a buffer's bytes (synchronizes for device memory).
template <typename T>
std::vector<T> to_host_vector(const Buffer& b) {
  const std::vector<std::uint8_t> bytes = b.to_host();
  std::vector<T> out(bytes.size() / sizeof(T));
  std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

/// \brief out [tokens, heads, head_dim] and lse [heads, tokens] of a run.
struct RunOutput {
  RunOutput(const Inputs& in);
  Buffer o, lse;
  TensorView o_view, lse_view;
};

/// \brief Writes the selected blocks of the listed heads of sequence 0 as a PNG heatmap.
void write_plan_png(const std::string& path, const Plan& plan, const std::vector<int>& heads);

int run_bench(const CommonOptions& o, int repeats);
int run_check(const CommonOptions& o);
int run_plan(const CommonOptions& o, const std::string& png, const std::string& show_heads,
             const std::string& density_png);

/// \brief Progress to stderr, only when stderr is a terminal.
void progress(const std::string& message);

}  // namespace proxyattn::cli
