// tests/cuda/cuda_prefill_test.cc: the CUDA backend against the double reference (STYLE.md
// section 6): dense and user-built plans (kernel error only), computed plans (SPEC.md section 4
// conformance, then the output against the reference run on the GPU's own plan), varlen, GQA,
// fully masked rows, bitwise repeatability. Skips where no GPU is visible.
//
// Run: ./build/tests/cuda/cuda_prefill_test   (PROXYATTN_TEST_LEVEL=full for the wide sweep)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/workspace.h"
#include "cpu/conformance.h"
#include "cpu/reference.h"
#include "cuda/backend.h"
#include "proxyattn/proxyattn.h"
#include "proxyattn/safetensors.h"
#include "testing/compare.h"
#include "testing/workload.h"

namespace proxyattn {
namespace {

using testing::Workload;
using testing::WorkloadKind;
using testing::WorkloadSpec;

bool full_level() {
  const char* level = std::getenv("PROXYATTN_TEST_LEVEL");
  return level != nullptr && std::string(level) == "full";
}

#define SKIP_WITHOUT_GPU()                                        \
  do {                                                            \
    if (!cuda::available()) GTEST_SKIP() << "no CUDA device";     \
  } while (0)

/// Device memory owned by a test.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(std::size_t bytes) : size_(bytes), data_(cuda::device_alloc(bytes)) {}
  ~DeviceBuffer() { cuda::device_free(data_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* data() const { return data_; }
  std::size_t size() const { return size_; }
  Workspace workspace() const { return Workspace{data_, size_, Device::kCUDA, 0}; }

 private:
  std::size_t size_;
  void* data_;
};

TensorView on_device(const TensorView& host, void* data) {
  TensorView v = host;
  v.data = data;
  v.device = Device::kCUDA;
  return v;
}

/// A workload copied to the device, with device outputs (poisoned with NaN bytes before a run).
struct DeviceRun {
  const Workload& w;
  DeviceBuffer q, k, v, o, lse;
  TensorView q_view, k_view, v_view, o_view, lse_view;

  explicit DeviceRun(const Workload& wl)
      : w(wl),
        q(wl.q.size()),
        k(wl.k.size()),
        v(wl.v.size()),
        o(static_cast<std::size_t>(wl.total_tokens * wl.spec.num_qo_heads * wl.spec.head_dim *
                                   dtype_size(wl.spec.dtype))),
        lse(static_cast<std::size_t>(wl.total_tokens * wl.spec.num_qo_heads) * sizeof(float)) {
    const Runtime rt;
    cuda::copy_to_device(q.data(), wl.q.data(), wl.q.size(), rt);
    cuda::copy_to_device(k.data(), wl.k.data(), wl.k.size(), rt);
    cuda::copy_to_device(v.data(), wl.v.data(), wl.v.size(), rt);
    q_view = on_device(wl.q_view(), q.data());
    k_view = on_device(wl.k_view(), k.data());
    v_view = on_device(wl.v_view(), v.data());
    const testing::Output host_out = testing::make_output(wl);
    o_view = on_device(host_out.o_view, o.data());
    lse_view = on_device(host_out.lse_view, lse.data());
    poison();
  }
  void poison() {
    std::vector<unsigned char> nan_bytes(o.size(), 0xff);
    cuda::copy_to_device(o.data(), nan_bytes.data(), o.size(), Runtime{});
    std::vector<unsigned char> lse_bytes(lse.size(), 0xff);
    cuda::copy_to_device(lse.data(), lse_bytes.data(), lse.size(), Runtime{});
  }
  /// Output copied to a host Output (for compare_output).
  testing::Output fetch() const {
    testing::Output out = testing::make_output(w);
    cuda::copy_to_host(out.o.data(), o.data(), o.size(), Runtime{});
    cuda::copy_to_host(out.lse.data(), lse.data(), lse.size(), Runtime{});
    return out;
  }
};

/// A host plan copied into a device workspace and re-bound there.
Plan plan_to_device(const Plan& host, const testing::Buffer& host_ws, DeviceBuffer& dev_ws) {
  cuda::copy_to_device(dev_ws.data(), host_ws.data(), host.layout.total_bytes, Runtime{});
  Plan p = bind_plan(host.layout, dev_ws.workspace(), host.scale);
  p.device = Device::kCUDA;
  return p;
}

/// The Problem of a host workload, built directly: the public CPU entries reject fp16, but the
/// reference and compare_output read any dtype through load_float.
Problem host_problem(const Workload& w, const testing::Output* out) {
  Problem p;
  p.shape = w.shape();
  p.dtype = w.spec.dtype;
  p.device = Device::kCPU;
  p.scale = 1.0f / std::sqrt(static_cast<float>(w.spec.head_dim));
  const std::int64_t H = w.spec.num_qo_heads, K = w.spec.num_kv_heads, D = w.spec.head_dim;
  p.q = w.q.data();
  p.k = w.k.data();
  p.v = w.v.data();
  p.q_stride_n = H * D;
  p.q_stride_h = D;
  p.k_stride_n = p.v_stride_n = K * D;
  p.k_stride_h = p.v_stride_h = D;
  p.o_stride_n = H * D;
  p.o_stride_h = D;
  if (out != nullptr) {
    p.o = out->o.data();
    p.lse = static_cast<float*>(out->lse.data());
    p.lse_stride_h = w.total_tokens;
  }
  return p;
}

testing::Reference gpu_reference_attend(const Workload& w, std::int64_t block,
                                    const std::vector<std::uint8_t>& mask) {
  testing::Reference r;
  reference::attend(host_problem(w, nullptr), block, mask, r.out, r.lse);
  return r;
}

testing::Reference gpu_reference_dense(const Workload& w) {
  testing::Reference r;
  reference::dense(host_problem(w, nullptr), r.out, r.lse);
  return r;
}

std::string case_name(const WorkloadSpec& s) {
  std::ostringstream os;
  os << to_string(s.dtype) << "_hd" << s.head_dim << "_h" << s.num_qo_heads << "_kv"
     << s.num_kv_heads << "_len";
  for (auto n : s.seq_lens) os << "_" << n;
  return os.str();
}

void expect_output_conforms(const Workload& w, const testing::Output& out,
                            const testing::Reference& ref, const std::string& what) {
  const Problem p = host_problem(w, &out);
  const OutputError err = compare_output(p, ref.out, ref.lse);
  const double tol = output_tolerance(w.spec.dtype, w.spec.head_dim);
  EXPECT_EQ(err.non_finite, 0) << what;
  EXPECT_LE(err.rel_error, tol) << what << "\n" << testing::describe_mismatches(w, out, ref, tol);
  EXPECT_LE(err.lse_max_abs_error, 1e-2) << what;
}

std::vector<WorkloadSpec> kernel_cases() {
  std::vector<WorkloadSpec> cases;
  const std::vector<std::vector<std::int32_t>> lengths =
      full_level() ? std::vector<std::vector<std::int32_t>>{{1}, {37}, {113}, {127}, {577}, {1100},
                                                            {300, 1, 777}}
                   : std::vector<std::vector<std::int32_t>>{{1}, {113}, {577}, {300, 1, 777}};
  const std::vector<std::pair<int, int>> heads = {{4, 4}, {8, 2}, {7, 1}};
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (int hd : {64, 128}) {
      for (const auto& lens : lengths) {
        for (const auto& [hq, hkv] : heads) {
          if (!full_level() && (hq == 8) && hd == 64) continue;
          WorkloadSpec s;
          s.seq_lens = lens;
          s.num_qo_heads = hq;
          s.num_kv_heads = hkv;
          s.head_dim = hd;
          s.dtype = dtype;
          s.kind = WorkloadKind::kRandom;
          s.seed = 7 + hd + hq;
          cases.push_back(s);
        }
      }
    }
  }
  return cases;
}

TEST(CudaAttend, DenseMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const WorkloadSpec& spec : kernel_cases()) {
    const Workload w = testing::make_workload(spec);
    DeviceRun run(w);
    dense(run.q_view, run.k_view, run.v_view, w.seqlens(), run.o_view, &run.lse_view);
    cuda::synchronize(Runtime{});
    expect_output_conforms(w, run.fetch(), gpu_reference_dense(w), "dense " + case_name(spec));
  }
}

TEST(CudaAttend, RandomMaskMatchesReference) {
  SKIP_WITHOUT_GPU();
  for (const WorkloadSpec& spec : kernel_cases()) {
    for (int block : {64, 128}) {
      for (double density : full_level() ? std::vector<double>{0.1, 0.5} : std::vector<double>{0.3}) {
        const Workload w = testing::make_workload(spec);
        testing::Buffer host_ws;
        const Plan host_plan = testing::random_mask_plan(w.shape(), block, density, 3, host_ws);
        DeviceBuffer dev_ws(host_plan.layout.total_bytes);
        const Plan plan = plan_to_device(host_plan, host_ws, dev_ws);
        DeviceRun run(w);
        attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
        cuda::synchronize(Runtime{});
        const auto ref = gpu_reference_attend(w, block, host_plan.to_dense());
        std::ostringstream what;
        what << "random mask b" << block << " d" << density << " " << case_name(spec);
        expect_output_conforms(w, run.fetch(), ref, what.str());
      }
    }
  }
}

TEST(CudaAttend, EmptyRowsGiveZeroAndMinusInf) {
  SKIP_WITHOUT_GPU();
  WorkloadSpec spec;
  spec.seq_lens = {200};
  spec.num_qo_heads = 2;
  spec.num_kv_heads = 1;
  spec.head_dim = 64;
  spec.dtype = DType::kBFloat16;
  spec.kind = WorkloadKind::kRandom;
  const Workload w = testing::make_workload(spec);
  const int block = 64, nb = 4, H = 2;
  std::vector<std::uint8_t> mask(H * nb * nb, 0);
  for (int m = 0; m < nb; ++m) mask[(0 * nb + m) * nb + m] = 1;  // head 0: diagonal; head 1: none
  testing::Buffer host_ws(workspace_size(w.shape(), [] {
    Config c;
    c.block_size = 64;
    c.min_budget_tokens = 0;
    c.dense_below_tokens = 0;
    return c;
  }()));
  const Plan host_plan = plan_from_block_mask(w.shape(), block, 1, mask.data(), host_ws.workspace());
  DeviceBuffer dev_ws(host_plan.layout.total_bytes);
  const Plan plan = plan_to_device(host_plan, host_ws, dev_ws);
  DeviceRun run(w);
  attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
  cuda::synchronize(Runtime{});
  const testing::Output out = run.fetch();
  const auto ref = gpu_reference_attend(w, block, host_plan.to_dense());
  expect_output_conforms(w, out, ref, "empty rows");
  const float* lse = static_cast<const float*>(out.lse.data());
  for (std::int64_t t = 0; t < w.total_tokens; ++t) {
    EXPECT_TRUE(std::isinf(lse[1 * w.total_tokens + t]) && lse[1 * w.total_tokens + t] < 0) << t;
  }
}

struct PlanCase {
  WorkloadSpec spec;
  Config config;
  std::string name;
};

std::vector<PlanCase> plan_cases() {
  std::vector<PlanCase> cases;
  auto add = [&](std::vector<std::int32_t> lens, int hq, int hkv, int hd, DType dtype, int block,
                 int g, LastBlockSelection last, double density, WorkloadKind kind) {
    PlanCase c;
    c.spec.seq_lens = std::move(lens);
    c.spec.num_qo_heads = hq;
    c.spec.num_kv_heads = hkv;
    c.spec.head_dim = hd;
    c.spec.dtype = dtype;
    c.spec.kind = kind;
    c.spec.seed = 11 + static_cast<std::uint64_t>(hq * 3 + block);
    c.config.block_size = block;
    c.config.num_proxy_heads = g;
    c.config.gamma = 0.9;
    c.config.min_budget_tokens = block;
    c.config.dense_below_tokens = 2 * block;
    c.config.last_block_selection = last;
    c.config.forced_density = density;
    std::ostringstream os;
    os << case_name(c.spec) << "_b" << block << "_g" << g << "_" << to_string(last) << "_fd"
       << density << "_" << testing::to_string(kind);
    c.name = os.str();
    cases.push_back(c);
  };
  const auto exact = LastBlockSelection::kExact, proxy = LastBlockSelection::kProxy;
  const auto structured = WorkloadKind::kStructured, random = WorkloadKind::kRandom;
  add({1000}, 4, 1, 64, DType::kBFloat16, 64, 1, exact, 0.0, structured);
  add({1000}, 4, 1, 64, DType::kBFloat16, 64, 1, proxy, 0.0, structured);
  add({1537}, 8, 2, 128, DType::kBFloat16, 128, 2, exact, 0.0, structured);
  add({700, 100, 1299}, 7, 1, 128, DType::kFloat16, 128, 1, exact, 0.0, structured);
  add({1100}, 4, 4, 64, DType::kFloat16, 64, 4, proxy, 0.0, random);
  add({1300}, 8, 2, 128, DType::kBFloat16, 64, 1, exact, 0.3, structured);
  if (full_level()) {
    add({2049}, 8, 8, 128, DType::kBFloat16, 128, 8, proxy, 0.0, structured);
    add({3000}, 4, 1, 64, DType::kFloat16, 64, 1, exact, 0.1, random);
    add({513, 1024, 77}, 7, 7, 64, DType::kBFloat16, 64, 7, exact, 0.0, structured);
  }
  return cases;
}

TEST(CudaPlan, ConformsToReferenceAndAttends) {
  SKIP_WITHOUT_GPU();
  for (const PlanCase& c : plan_cases()) {
    SCOPED_TRACE(c.name);
    const Workload w = testing::make_workload(c.spec);
    DeviceRun run(w);
    DeviceBuffer ws(workspace_size(w.shape(), c.config));
    const Plan plan = proxyattn::plan(run.q_view, run.k_view, w.seqlens(), c.config, ws.workspace());
    attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
    cuda::synchronize(Runtime{});
    const HostPlan host = copy_to_host(plan);
    const auto ref_plan = reference::plan(host_problem(w, nullptr), c.config);
    const PlanConformance conf = check_plan(ref_plan, host.plan, c.config);
    EXPECT_TRUE(conf.ok) << conf.first_failure << " (budget mismatches " << conf.budget_mismatches
                         << ", selection mismatches " << conf.selection_mismatches << ")";
    const auto ref = gpu_reference_attend(w, c.config.block_size, host.plan.to_dense());
    expect_output_conforms(w, run.fetch(), ref, c.name);
  }
}

TEST(CudaPlan, PrefillIsBitwiseRepeatable) {
  SKIP_WITHOUT_GPU();
  const PlanCase c = plan_cases()[2];
  const Workload w = testing::make_workload(c.spec);
  DeviceRun run(w);
  DeviceBuffer ws(workspace_size(w.shape(), c.config));
  std::vector<std::vector<unsigned char>> outputs;
  std::vector<std::vector<std::uint8_t>> masks;
  for (int rep = 0; rep < 2; ++rep) {
    run.poison();
    const Plan plan = prefill(run.q_view, run.k_view, run.v_view, w.seqlens(), c.config,
                              ws.workspace(), run.o_view, &run.lse_view);
    cuda::synchronize(Runtime{});
    const testing::Output out = run.fetch();
    const auto* bytes = static_cast<const unsigned char*>(out.o.data());
    outputs.emplace_back(bytes, bytes + out.o.size());
    masks.push_back(plan.to_dense());
  }
  EXPECT_TRUE(outputs[0] == outputs[1]);
  EXPECT_TRUE(masks[0] == masks[1]);
}

// Real learned inputs (data/qkv, the model issue's dump): plan conformance and output, both
// last-block modes, the densest (layer 3) and the sparsest (layer 7) layer.
TEST(CudaPlan, RealDumpConforms) {
  SKIP_WITHOUT_GPU();
  for (const char* layer : {"pa-tiny-8k-layer3", "pa-tiny-8k-layer7"}) {
    const std::string path = std::string(PROXYATTN_SOURCE_DIR) + "/data/qkv/" + layer + ".safetensors";
    if (!std::ifstream(path).good()) GTEST_SKIP() << path << " absent";
    const safetensors::QkvFile f = safetensors::read_qkv(path);
    const Workload w = testing::workload_from_tensors(
        f.dtype, f.tokens(), f.num_qo_heads(), f.num_kv_heads(), f.head_dim(), f.q.data.data(),
        f.k.data.data(), f.v.data.data(), f.cu_seqlens);
    for (int block : {64, 128}) {
      for (double gamma : {0.9, 0.95}) {
        for (auto last : {LastBlockSelection::kExact, LastBlockSelection::kProxy}) {
          Config config;
          config.block_size = block;
          config.gamma = gamma;
          config.min_budget_tokens = 256;
          config.dense_below_tokens = 256;
          config.last_block_selection = last;
          std::ostringstream name;
          name << layer << " b" << block << " gamma " << gamma << " " << to_string(last);
          SCOPED_TRACE(name.str());
          DeviceRun run(w);
          DeviceBuffer ws(workspace_size(w.shape(), config));
          const Plan plan = prefill(run.q_view, run.k_view, run.v_view, w.seqlens(), config,
                                    ws.workspace(), run.o_view, &run.lse_view);
          cuda::synchronize(Runtime{});
          const HostPlan host = copy_to_host(plan);
          const auto ref_plan = reference::plan(host_problem(w, nullptr), config);
          const PlanConformance conf = check_plan(ref_plan, host.plan, config);
          EXPECT_TRUE(conf.ok) << conf.first_failure;
          const auto ref = gpu_reference_attend(w, block, host.plan.to_dense());
          expect_output_conforms(w, run.fetch(), ref, name.str());
        }
      }
    }
  }
}

}  // namespace
}  // namespace proxyattn
