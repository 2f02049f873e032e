// tools/proxyattn/inputs.cc: flags, inputs (generated or safetensors) and device mirrors.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "proxyattn/safetensors.h"
#include "tools/proxyattn/cli.h"

namespace proxyattn::cli {

namespace {

constexpr std::int64_t kMaxInt = 2147483647;
constexpr std::int64_t kMaxSeqLen = std::int64_t{1} << 30;
constexpr std::int64_t kMaxHeads = 1 << 16;
constexpr std::int64_t kMaxHeadDim = 1 << 16;

Buffer convert(const Buffer& src, DType from, DType to) {
  const std::int64_t n = static_cast<std::int64_t>(src.size() / dtype_size(from));
  Buffer out(static_cast<std::size_t>(n) * dtype_size(to));
  convert_elements(src.data(), from, out.data(), to, n);
  return out;
}

// A device copy of a host buffer (nothing on the CPU).
Buffer mirror(const Buffer& host, Device device) {
  if (device != Device::kCUDA) return Buffer();
  Buffer d(host.size(), Device::kCUDA);
  copy_bytes(d.data(), Device::kCUDA, host.data(), Device::kCPU, host.size());
  return d;
}

}  // namespace

namespace {

// Digits only (after one leading '-' when allowed): std::stoi and friends stop at the first bad
// character ("1x" reads as 1) or skip leading spaces; the CLI takes the whole text or nothing.
bool all_digits(const std::string& text, std::size_t from) {
  if (from >= text.size()) return false;
  for (std::size_t i = from; i < text.size(); ++i) {
    if (text[i] < '0' || text[i] > '9') return false;
  }
  return true;
}

}  // namespace

std::int64_t parse_int_flag(const std::string& flag, const std::string& text, std::int64_t lo,
                            std::int64_t hi) {
  const bool negative = lo < 0 && !text.empty() && text[0] == '-';
  errno = 0;
  char* end = nullptr;
  const long long v = all_digits(text, negative ? 1 : 0) ? std::strtoll(text.c_str(), &end, 10) : 0;
  if (end != text.c_str() + text.size() || errno != 0 || v < lo || v > hi) {
    fail(flag, " = '", printable(text), "', expected an integer in [", lo, ", ", hi, "]");
  }
  return v;
}

std::uint64_t parse_u64_flag(const std::string& flag, const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = all_digits(text, 0) ? std::strtoull(text.c_str(), &end, 10) : 0;
  if (end != text.c_str() + text.size() || errno != 0) {
    fail(flag, " = '", printable(text), "', expected an integer in [0, 2^64 - 1]");
  }
  return v;
}

void progress(const std::string& message) {
  if (isatty(STDERR_FILENO)) std::cerr << "\r\033[K" << message << std::flush;
}

void CommonOptions::add_to(CLI::App& app) {
  this->app = &app;
  const Config defaults;
  for (const ConfigField& f : config_fields()) {
    std::string help = f.help;
    help += " [" + get_config_field(defaults, f.name) + "]";
    app.add_option_function<std::string>(
        f.flag, [this, name = std::string(f.name)](const std::string& text) {
          config_text.emplace_back(name, text);
        }, help);
  }
  app.add_option("--backend", backend, "cpu|cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--dtype", dtype, "fp32|bf16|fp16 [fp32 on cpu, bf16 on cuda]")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  // Numbers go through the strict parsers above: the whole text, range-checked.
  auto int_flag = [&app](const char* flag, std::int64_t* out, std::int64_t lo, std::int64_t hi,
                         const std::string& help) {
    app.add_option_function<std::string>(
        flag, [out, flag, lo, hi](const std::string& text) { *out = parse_int_flag(flag, text, lo, hi); },
        help + " [" + std::to_string(*out) + "]");
  };
  app.add_option_function<std::string>(
      "--threads",
      [this](const std::string& text) {
        threads = static_cast<int>(parse_int_flag("--threads", text, 0, kMaxInt));
      },
      "CPU threads, any positive number (0: all hardware threads) [0]");
  app.add_option_function<std::string>(
      "--seed", [this](const std::string& text) { seed = parse_u64_flag("--seed", text); },
      "workload seed, 0 .. 2^64-1 [0]");
  app.add_flag("--json", json, "end stdout with one JSON object");
  app.add_flag("--check-finite", check_finite, "reject NaN/Inf in q, k, v (docs/SPEC.md section 6)");
  int_flag("--seq-len", &seq_len, 0, kMaxSeqLen, "generated workload: tokens, 0 .. 2^30");
  int_flag("--heads", &heads, 1, kMaxHeads, "generated workload: query heads");
  int_flag("--kv-heads", &kv_heads, 1, kMaxHeads, "generated workload: KV heads");
  int_flag("--head-dim", &head_dim, 1, kMaxHeadDim, "generated workload: head_dim");
  app.add_option("--workload", workload, "generated workload: random|structured")
      ->check(CLI::IsMember({"random", "structured", "ones", "arange"}))
      ->capture_default_str();
  app.add_option("--input", input, "q/k/v from a safetensors file (docs/SPEC.md section 5)")
      ->check(CLI::ExistingFile);
}

Config CommonOptions::config() const {
  Config c;
  for (const auto& [name, text] : config_text) set_config_field(c, name, text);
  c.validate();
  return c;
}

Device CommonOptions::device() const { return backend == "cuda" ? Device::kCUDA : Device::kCPU; }

DType CommonOptions::resolved_dtype() const {
  if (!dtype.empty()) return parse_dtype(dtype);
  return device() == Device::kCUDA ? DType::kBFloat16 : DType::kFloat32;
}

void load_inputs(const CommonOptions& o, Inputs& in) {
  const DType dtype = o.resolved_dtype();
  in.device = o.device();
  if (!o.input.empty()) {
    progress("reading " + printable(o.input, 256));
    safetensors::QkvFile f = safetensors::read_qkv(o.input);
    in.host = testing::workload_from_tensors(f.dtype, f.tokens(), f.num_qo_heads(), f.num_kv_heads(),
                                             f.head_dim(), f.q.data.data(), f.k.data.data(),
                                             f.v.data.data(), f.cu_seqlens);
    if (o.dtype.empty() ? false : f.dtype != dtype) {  // convert on request
      in.host.q = convert(in.host.q, f.dtype, dtype);
      in.host.k = convert(in.host.k, f.dtype, dtype);
      in.host.v = convert(in.host.v, f.dtype, dtype);
      in.host.spec.dtype = dtype;
    }
    in.description = printable(o.input, 256);
  } else {
    testing::WorkloadSpec spec;
    if (o.seq_len < 0 || o.seq_len > kMaxSeqLen) {
      fail("--seq-len = ", o.seq_len, ", expected 0 .. 2^30");
    }
    if (o.heads % o.kv_heads != 0) {
      fail("--heads = ", o.heads, " is not a multiple of --kv-heads = ", o.kv_heads);
    }
    spec.seq_lens = {static_cast<std::int32_t>(o.seq_len)};
    spec.num_qo_heads = o.heads;
    spec.num_kv_heads = o.kv_heads;
    spec.head_dim = o.head_dim;
    spec.dtype = dtype;
    spec.kind = testing::parse_workload(o.workload);
    spec.seed = o.seed;
    progress("generating the " + o.workload + " workload");
    in.host = testing::make_workload(spec);
    in.description = o.workload + " N=" + std::to_string(o.seq_len);
  }
  in.q_dev = mirror(in.host.q, in.device);
  in.k_dev = mirror(in.host.k, in.device);
  in.v_dev = mirror(in.host.v, in.device);
}

namespace {
TensorView on_device(TensorView t, const Buffer& dev) {
  if (dev.data() != nullptr) {
    t.data = dev.data();
    t.device = Device::kCUDA;
  }
  return t;
}
}  // namespace

TensorView Inputs::q() const { return on_device(host.q_view(), q_dev); }
TensorView Inputs::k() const { return on_device(host.k_view(), k_dev); }
TensorView Inputs::v() const { return on_device(host.v_view(), v_dev); }

RunOutput::RunOutput(const Inputs& in)
    : o(in.host.total_tokens * in.host.spec.num_qo_heads * in.host.spec.head_dim *
            dtype_size(in.host.spec.dtype),
        in.device),
      lse(in.host.total_tokens * in.host.spec.num_qo_heads * sizeof(float), in.device) {
  const std::int64_t T = in.host.total_tokens, H = in.host.spec.num_qo_heads;
  o_view = TensorView::contiguous(o.data(), in.host.spec.dtype, {T, H, in.host.spec.head_dim}, in.device);
  lse_view = TensorView::contiguous(lse.data(), DType::kFloat32, {H, T}, in.device);
}

}  // namespace proxyattn::cli
