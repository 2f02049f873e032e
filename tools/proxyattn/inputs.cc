// tools/proxyattn/inputs.cc: flags, inputs (generated or safetensors) and device mirrors.
#include <unistd.h>

#include <cstring>
#include <iostream>

#include "common/numeric.h"
#include "cuda/backend.h"
#include "proxyattn/safetensors.h"
#include "tools/proxyattn/cli.h"

namespace proxyattn::cli {

namespace {

bool parse_bool(const std::string& name, const std::string& value) {
  if (value == "true" || value == "1") return true;
  if (value == "false" || value == "0") return false;
  PROXYATTN_FAIL(name, " = '", value, "', expected true or false");
}

testing::Buffer convert(const void* src, DType from, DType to, std::int64_t n) {
  testing::Buffer out(n * dtype_size(to));
  for (std::int64_t e = 0; e < n; ++e) store_float(out.data(), to, e, load_float(src, from, e));
  return out;
}

}  // namespace

void progress(const std::string& message) {
  if (isatty(STDERR_FILENO)) std::cerr << "\r\033[K" << message << std::flush;
}

void CommonOptions::add_to(CLI::App& app) {
  app.add_option("--block", block, "block size b (64 or 128)")->capture_default_str();
  app.add_option("--stride", stride, "proxy stride s, divides b")->capture_default_str();
  app.add_option("--gamma", gamma, "attention mass each budget covers, (0, 1]")->capture_default_str();
  app.add_option("--proxy-heads", proxy_heads, "proxy heads g, divides kv heads")->capture_default_str();
  app.add_option("--min-budget", min_budget, "lower clamp of budgets, tokens")->capture_default_str();
  app.add_option("--max-budget", max_budget, "upper clamp of budgets, tokens (-1: none)")->capture_default_str();
  app.add_option("--dense-below", dense_below, "sequences up to this many tokens run dense (-1: auto)")
      ->capture_default_str();
  app.add_option("--keep-sink", keep_sink, "always select key block 0 (true|false)")->capture_default_str();
  app.add_option("--keep-diagonal", keep_diagonal, "always select the diagonal block (true|false)")
      ->capture_default_str();
  app.add_option("--last-block", last_block, "last query block ranking: exact|proxy")
      ->check(CLI::IsMember({"exact", "proxy"}))
      ->capture_default_str();
  app.add_option("--density", density, "forced density for benchmarks, (0, 1]; absent: off");
  app.add_option("--backend", backend, "cpu|cuda")->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  app.add_option("--dtype", dtype, "fp32|bf16|fp16 [fp32 on cpu, bf16 on cuda]")
      ->check(CLI::IsMember({"fp32", "bf16", "fp16"}));
  app.add_option("--threads", threads, "CPU threads (0: all hardware threads)")->capture_default_str();
  app.add_option("--seed", seed, "workload seed")->capture_default_str();
  app.add_flag("--json", json, "end stdout with one JSON object");
  app.add_flag("--check-finite", check_finite, "reject NaN/Inf in q, k, v (SPEC.md section 6)");
  app.add_option("--seq-len", seq_len, "generated workload: tokens")->capture_default_str();
  app.add_option("--heads", heads, "generated workload: query heads")->capture_default_str();
  app.add_option("--kv-heads", kv_heads, "generated workload: KV heads")->capture_default_str();
  app.add_option("--head-dim", head_dim, "generated workload: head_dim")->capture_default_str();
  app.add_option("--workload", workload, "generated workload: random|structured")
      ->check(CLI::IsMember({"random", "structured", "ones", "arange"}))
      ->capture_default_str();
  app.add_option("--input", input, "q/k/v from a safetensors file (SPEC.md section 5)")
      ->check(CLI::ExistingFile);
}

Config CommonOptions::config() const {
  Config c;
  c.block_size = block;
  c.stride = stride;
  c.gamma = gamma;
  c.num_proxy_heads = proxy_heads;
  c.min_budget_tokens = min_budget;
  c.max_budget_tokens = max_budget;
  c.dense_below_tokens = dense_below;
  c.keep_sink = parse_bool("--keep-sink", keep_sink);
  c.keep_diagonal = parse_bool("--keep-diagonal", keep_diagonal);
  c.last_block_selection = parse_last_block_selection(last_block);
  c.forced_density = density;
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
    progress("reading " + o.input);
    safetensors::QkvFile f = safetensors::read_qkv(o.input);
    in.host = testing::workload_from_tensors(f.dtype, f.tokens(), f.num_qo_heads(), f.num_kv_heads(),
                                             f.head_dim(), f.q.data.data(), f.k.data.data(),
                                             f.v.data.data(), f.cu_seqlens);
    if (o.dtype.empty() ? false : f.dtype != dtype) {  // convert on request
      in.host.q = convert(in.host.q.data(), f.dtype, dtype, in.host.q.size() / dtype_size(f.dtype));
      in.host.k = convert(in.host.k.data(), f.dtype, dtype, in.host.k.size() / dtype_size(f.dtype));
      in.host.v = convert(in.host.v.data(), f.dtype, dtype, in.host.v.size() / dtype_size(f.dtype));
      in.host.spec.dtype = dtype;
    }
    in.description = o.input;
  } else {
    testing::WorkloadSpec spec;
    PROXYATTN_CHECK(o.seq_len >= 0 && o.seq_len <= (1ll << 30), "--seq-len = ", o.seq_len,
                    ", expected 0 .. 2^30");
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
  if (in.device == Device::kCUDA) {
    auto mirror = [](const testing::Buffer& b) {
      void* d = cuda::device_alloc(b.size());
      cuda::copy_to_device(d, b.data(), b.size(), Runtime{});
      return d;
    };
    in.q_dev = mirror(in.host.q);
    in.k_dev = mirror(in.host.k);
    in.v_dev = mirror(in.host.v);
  }
}

Inputs::~Inputs() {
  for (void* p : {q_dev, k_dev, v_dev}) {
    if (p != nullptr) cuda::device_free(p);
  }
}

namespace {
TensorView on_device(TensorView t, void* dev) {
  if (dev != nullptr) {
    t.data = dev;
    t.device = Device::kCUDA;
  }
  return t;
}
}  // namespace

TensorView Inputs::q() const { return on_device(host.q_view(), q_dev); }
TensorView Inputs::k() const { return on_device(host.k_view(), k_dev); }
TensorView Inputs::v() const { return on_device(host.v_view(), v_dev); }

DeviceBuffer::DeviceBuffer(std::size_t bytes, Device device_) : size(bytes), device(device_) {
  if (device == Device::kCUDA) {
    data = cuda::device_alloc(bytes);
  } else {
    host = testing::Buffer(bytes);
    data = host.data();
  }
}

DeviceBuffer::~DeviceBuffer() {
  if (device == Device::kCUDA && data != nullptr) cuda::device_free(data);
}

template <typename T>
std::vector<T> DeviceBuffer::to_host() const {
  std::vector<T> out(size / sizeof(T));
  if (device == Device::kCUDA) {
    cuda::copy_to_host(out.data(), data, out.size() * sizeof(T), Runtime{});
  } else {
    std::memcpy(out.data(), data, out.size() * sizeof(T));
  }
  return out;
}
template std::vector<float> DeviceBuffer::to_host<float>() const;
template std::vector<std::uint16_t> DeviceBuffer::to_host<std::uint16_t>() const;
template std::vector<std::uint8_t> DeviceBuffer::to_host<std::uint8_t>() const;

RunOutput::RunOutput(const Inputs& in)
    : o(in.host.total_tokens * in.host.spec.num_qo_heads * in.host.spec.head_dim *
            dtype_size(in.host.spec.dtype),
        in.device),
      lse(in.host.total_tokens * in.host.spec.num_qo_heads * sizeof(float), in.device) {
  const std::int64_t T = in.host.total_tokens, H = in.host.spec.num_qo_heads;
  o_view = TensorView::contiguous(o.data, in.host.spec.dtype, {T, H, in.host.spec.head_dim}, in.device);
  lse_view = TensorView::contiguous(lse.data, DType::kFloat32, {H, T}, in.device);
}

}  // namespace proxyattn::cli
