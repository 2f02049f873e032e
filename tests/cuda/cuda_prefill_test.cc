// tests/cuda/cuda_prefill_test.cc: the CUDA backend against the double reference (docs/STYLE.md
// section 6): dense and user-built plans (kernel error only), computed plans (docs/SPEC.md
// section 4 conformance, then the output against the reference run on the GPU's own plan), varlen, GQA,
// fully masked rows, device error flags, bitwise repeatability. Pass rule: rel error <= 2x the
// same-precision naive error + noise, or the 16-bit floor (output_conforms), LSE within 1e-3, no
// NaN/Inf.
// Skips where no GPU is visible.
//
// Run: ./build/tests/cuda/cuda_prefill_test   (PROXYATTN_TEST_LEVEL=full for the wide sweep)
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "common/numeric.h"
#include "common/workspace.h"
#include "cuda/backend.h"
#include "cuda/dispatch.h"
#include "proxyattn/oracle/compare.h"
#include "proxyattn/oracle/conformance.h"
#include "proxyattn/oracle/reference.h"
#include "proxyattn/oracle/workload.h"
#include "proxyattn/proxyattn.h"
#include "proxyattn/safetensors.h"

namespace proxyattn {
namespace {

using testing::Workload;
using testing::WorkloadKind;
using testing::WorkloadSpec;

bool full_level() {
  const char* level = std::getenv("PROXYATTN_TEST_LEVEL");
  return level != nullptr && std::string(level) == "full";
}

#define SKIP_WITHOUT_GPU()                                    \
  do {                                                        \
    if (!cuda::available()) GTEST_SKIP() << "no CUDA device"; \
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
  (void)host_ws;
  return copy_plan(host, dev_ws.workspace());
}

// The double reference of attending `mask`, with the same-precision naive run's error (the
// yardstick of docs/STYLE.md), the two on parallel threads.
testing::Reference gpu_reference_attend(const Workload& w, std::int64_t block,
                                        const std::vector<std::uint8_t>& mask) {
  testing::Reference r;
  const reference::Operands p = testing::operands_of(w);
  std::vector<std::uint8_t> naive;  // [total_tokens, num_qo_heads, head_dim] of w.spec.dtype
  auto naive_done =
      std::async(std::launch::async, [&] { reference::naive_attend(p, block, mask, naive); });
  reference::attend(p, block, mask, r.out, r.lse);
  naive_done.get();
  reference::Operands naive_operands = p;
  naive_operands.out = TensorView::contiguous(
      naive.data(), w.spec.dtype, {w.total_tokens, w.spec.num_qo_heads, w.spec.head_dim});
  r.naive = compare_output(naive_operands, r.out, r.lse);
  return r;
}

/// f(0), ..., f(n - 1), each on its own thread: the scalar double reference dominates the run
/// time of these tests, and the GPU host has cores to spare.
template <typename F>
auto parallel_map(std::size_t n, F f) -> std::vector<decltype(f(std::size_t{0}))> {
  std::vector<std::future<decltype(f(std::size_t{0}))>> futures;
  for (std::size_t i = 0; i < n; ++i) futures.push_back(std::async(std::launch::async, f, i));
  std::vector<decltype(f(std::size_t{0}))> results;
  for (auto& fu : futures) results.push_back(fu.get());
  return results;
}

testing::Reference gpu_reference_dense(const Workload& w) {
  constexpr std::int64_t kBlock = 128;
  return gpu_reference_attend(w, kBlock, reference::full_mask(w.shape(), kBlock));
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
  const reference::Operands p = testing::operands_of(w, &out);
  const OutputError err = compare_output(p, ref.out, ref.lse);
  const double bound = ref.bound(w.spec.dtype);  // 2x the same-precision naive error + noise
  EXPECT_EQ(err.non_finite, 0) << what << ": NaN/Inf where the reference is finite";
  EXPECT_TRUE(output_conforms(err, bound, w.spec.dtype))
      << what << ": rel error " << err.rel_error << " > bound " << bound << " (naive "
      << ref.naive.rel_error << "), max abs " << err.max_abs_error << ", mean abs "
      << err.mean_abs_error << ", lse " << err.lse_max_abs_error << "\n"
      << testing::describe_mismatches(w, out, ref, bound * 10);
  EXPECT_LE(err.lse_max_abs_error, 1e-3) << what;
  // No NaN/Inf anywhere in O, and LSE finite exactly where the reference's is.
  const std::int64_t T = w.total_tokens, H = w.spec.num_qo_heads, D = w.spec.head_dim;
  for (std::int64_t i = 0; i < T * H * D; ++i) {
    ASSERT_TRUE(std::isfinite(load_float(out.o.data(), w.spec.dtype, i))) << what << ": O " << i;
  }
  const auto* lse = static_cast<const float*>(out.lse.data());
  for (std::int64_t i = 0; i < H * T; ++i) {
    ASSERT_EQ(std::isfinite(lse[i]), std::isfinite(ref.lse[i])) << what << ": LSE " << i;
  }
}

/// Sets PROXYATTN_CUDA_ATTEND (the attention kernel choice, src/cuda/dispatch.h) for a scope.
class ScopedAttendKernel {
 public:
  explicit ScopedAttendKernel(const std::string& kernel) {
    const char* old = std::getenv("PROXYATTN_CUDA_ATTEND");
    had_ = old != nullptr;
    if (had_) old_ = old;
    setenv("PROXYATTN_CUDA_ATTEND", kernel.c_str(), 1);
  }
  ~ScopedAttendKernel() {
    if (had_) {
      setenv("PROXYATTN_CUDA_ATTEND", old_.c_str(), 1);
    } else {
      unsetenv("PROXYATTN_CUDA_ATTEND");
    }
  }
  ScopedAttendKernel(const ScopedAttendKernel&) = delete;
  ScopedAttendKernel& operator=(const ScopedAttendKernel&) = delete;

 private:
  bool had_ = false;
  std::string old_;
};

/// The attention kernels every attention check runs: the portable sm_80 kernel, and where the
/// device and build have it the sm_90a kernel with its benchmarked variants (bf16 only; other
/// types run the default sm_90a kernel under those names).
const std::vector<std::string>& attend_kernels() {
  static const std::vector<std::string> kernels = [] {
    std::vector<std::string> k = {"sm80"};
    ScopedAttendKernel sm90("sm90");
    if (cuda::attend_kernel_for(DType::kBFloat16, 128, 128) == cuda::KernelFamily::kSm90Wgmma) {
      k.insert(k.end(), {"sm90_one_tile", "sm90_persistent", "sm90_more_stages", "sm90_pingpong"});
    }
    return k;
  }();
  return kernels;
}

/// Runs `launch` (which writes run's outputs) over poisoned outputs and checks them against ref,
/// once per attention kernel.
void expect_attend_conforms(DeviceRun& run, const testing::Reference& ref, const std::string& what,
                            const std::function<void()>& launch) {
  for (const std::string& kernel : attend_kernels()) {
    ScopedAttendKernel scoped(kernel);
    run.poison();
    launch();
    cuda::synchronize(Runtime{});
    expect_output_conforms(run.w, run.fetch(), ref, what + " [" + kernel + "]");
  }
}

std::vector<WorkloadSpec> kernel_cases() {
  std::vector<WorkloadSpec> cases;
  const std::vector<std::vector<std::int32_t>> lengths =
      full_level() ? std::vector<std::vector<std::int32_t>>{{1},   {37},   {113},        {127},
                                                            {577}, {1100}, {300, 1, 777}}
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
  const std::vector<WorkloadSpec> specs = kernel_cases();
  const auto refs = parallel_map(specs.size(), [&](std::size_t i) {
    return gpu_reference_dense(testing::make_workload(specs[i]));
  });
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const Workload w = testing::make_workload(specs[i]);
    DeviceRun run(w);
    expect_attend_conforms(run, refs[i], "dense " + case_name(specs[i]), [&] {
      dense(run.q_view, run.k_view, run.v_view, w.seqlens(), run.o_view, &run.lse_view);
    });
  }
}

/// A workload with a host-built plan and the reference of that plan.
struct MaskCase {
  Workload w;
  testing::Buffer host_ws;
  Plan host_plan;
  testing::Reference ref;
  std::string what;
};

/// Builds the cases (make(i) fills w, host_ws, host_plan and what) and their references on
/// parallel threads, then checks the GPU against them.
void check_mask_cases(std::size_t n, const std::function<void(std::size_t, MaskCase&)>& make) {
  const auto cases = parallel_map(n, [&](std::size_t i) {
    auto c = std::make_unique<MaskCase>();
    make(i, *c);
    c->ref = gpu_reference_attend(c->w, c->host_plan.layout.block_size, c->host_plan.to_dense());
    return c;
  });
  for (const auto& c : cases) {
    DeviceBuffer dev_ws(c->host_ws.size());
    const Plan plan = plan_to_device(c->host_plan, c->host_ws, dev_ws);
    DeviceRun run(c->w);
    expect_attend_conforms(run, c->ref, c->what, [&] {
      attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
    });
    plan.check_flags();
  }
}

TEST(CudaAttend, RandomMaskMatchesReference) {
  SKIP_WITHOUT_GPU();
  struct Params {
    WorkloadSpec spec;
    int block;
    double density;
  };
  std::vector<Params> params;
  for (const WorkloadSpec& spec : kernel_cases()) {
    for (int block : {64, 128}) {
      for (double density :
           full_level() ? std::vector<double>{0.1, 0.5} : std::vector<double>{0.3}) {
        params.push_back({spec, block, density});
      }
    }
  }
  check_mask_cases(params.size(), [&](std::size_t i, MaskCase& c) {
    const Params& q = params[i];
    c.w = testing::make_workload(q.spec);
    c.host_plan = testing::random_mask_plan(c.w.shape(), q.block, q.density, 3, c.host_ws);
    std::ostringstream what;
    what << "random mask b" << q.block << " d" << q.density << " " << case_name(q.spec);
    c.what = what.str();
  });
}

// A user plan whose heads select nested prefixes of their group's order with counts drawn per
// head (a quarter of them 0), and random last-block sets of their own: heads of one group then
// walk different lengths of one order, or separate last-block lists.
Plan nested_mask_plan(const Workload& w, int block, int num_proxy_heads, std::uint64_t seed,
                      testing::Buffer& host_ws) {
  const ProblemShape shape = w.shape();
  Config config;
  config.block_size = block;
  config.num_proxy_heads = num_proxy_heads;
  config.min_budget_tokens = 0;
  config.dense_below_tokens = 0;
  host_ws = testing::Buffer(workspace_size(shape, config));
  const std::int64_t H = shape.num_qo_heads, per_group = H / num_proxy_heads;
  std::mt19937_64 rng(seed);
  std::vector<std::uint8_t> mask;
  for (std::int64_t i = 0; i < shape.batch(); ++i) {
    const std::int64_t nb = (shape.seq_len(i) + block - 1) / block;
    std::vector<std::uint8_t> seq_mask(H * nb * nb, 0);
    for (std::int64_t j = 0; j < num_proxy_heads; ++j) {
      for (std::int64_t m = 0; m < nb; ++m) {
        std::vector<std::int64_t> order(m + 1);
        for (std::int64_t n = 0; n <= m; ++n) order[n] = n;
        std::shuffle(order.begin(), order.end(), rng);
        for (std::int64_t h = j * per_group; h < (j + 1) * per_group; ++h) {
          const std::uint64_t draw = rng() % static_cast<std::uint64_t>(m + 2);
          const std::int64_t count = rng() % 4 == 0 ? 0 : static_cast<std::int64_t>(draw);
          for (std::int64_t c = 0; c < count; ++c) {
            if (m == nb - 1) {  // the last block: any set per head
              seq_mask[(h * nb + m) * nb + static_cast<std::int64_t>(rng() % (m + 1))] = 1;
            } else {
              seq_mask[(h * nb + m) * nb + order[c]] = 1;
            }
          }
        }
      }
    }
    mask.insert(mask.end(), seq_mask.begin(), seq_mask.end());
  }
  return plan_from_block_mask(shape, block, num_proxy_heads, mask.data(), host_ws.workspace());
}

TEST(CudaAttend, NestedPerHeadCountsMatchReference) {
  SKIP_WITHOUT_GPU();
  struct Params {
    std::vector<std::int32_t> lens;
    int hq, hkv, groups;
    DType dtype;
    int block;
  };
  std::vector<Params> params;
  for (DType dtype : {DType::kBFloat16, DType::kFloat16}) {
    for (int block : {64, 128}) {
      params.push_back({{1000}, 8, 2, 1, dtype, block});
      params.push_back({{300, 1, 777}, 8, 2, 2, dtype, block});
      params.push_back({{577}, 4, 1, 1, dtype, block});
    }
  }
  check_mask_cases(params.size(), [&](std::size_t i, MaskCase& c) {
    const Params& q = params[i];
    WorkloadSpec spec;
    spec.seq_lens = q.lens;
    spec.num_qo_heads = q.hq;
    spec.num_kv_heads = q.hkv;
    spec.head_dim = 128;
    spec.dtype = q.dtype;
    spec.kind = WorkloadKind::kRandom;
    spec.seed = 29 + static_cast<std::uint64_t>(q.block);
    c.w = testing::make_workload(spec);
    c.host_plan = nested_mask_plan(c.w, q.block, q.groups, 5 + i, c.host_ws);
    std::ostringstream what;
    what << "nested b" << q.block << " g" << q.groups << " " << case_name(spec);
    c.what = what.str();
  });
}

TEST(CudaAttend, EmptyRowsGiveZeroAndMinusInf) {
  SKIP_WITHOUT_GPU();
  for (int hd : {64, 128}) {
    for (int block : {64, 128}) {
      WorkloadSpec spec;
      spec.seq_lens = {200};
      spec.num_qo_heads = 2;
      spec.num_kv_heads = 1;
      spec.head_dim = hd;
      spec.dtype = DType::kBFloat16;
      spec.kind = WorkloadKind::kRandom;
      const Workload w = testing::make_workload(spec);
      const int nb = (200 + block - 1) / block, H = 2;
      std::vector<std::uint8_t> mask(H * nb * nb, 0);
      for (int m = 0; m < nb; ++m) mask[(0 * nb + m) * nb + m] = 1;  // head 0: diagonal; 1: none
      Config config;
      config.block_size = block;
      config.min_budget_tokens = 0;
      config.dense_below_tokens = 0;
      testing::Buffer host_ws(workspace_size(w.shape(), config));
      const Plan host_plan =
          plan_from_block_mask(w.shape(), block, 1, mask.data(), host_ws.workspace());
      DeviceBuffer dev_ws(host_ws.size());
      const Plan plan = plan_to_device(host_plan, host_ws, dev_ws);
      const auto ref = gpu_reference_attend(w, block, host_plan.to_dense());
      DeviceRun run(w);
      for (const std::string& kernel : attend_kernels()) {
        ScopedAttendKernel scoped(kernel);
        std::ostringstream what;
        what << "empty rows hd" << hd << " b" << block << " [" << kernel << "]";
        run.poison();
        attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
        cuda::synchronize(Runtime{});
        const testing::Output out = run.fetch();
        expect_output_conforms(w, out, ref, what.str());
        const float* lse = static_cast<const float*>(out.lse.data());
        for (std::int64_t t = 0; t < w.total_tokens; ++t) {
          const float x = lse[1 * w.total_tokens + t];
          EXPECT_TRUE(std::isinf(x) && x < 0) << what.str() << " token " << t;
          for (std::int64_t d = 0; d < hd; ++d) {
            ASSERT_EQ(load_float(out.o.data(), w.spec.dtype, (t * H + 1) * hd + d), 0.0f)
                << what.str() << " token " << t;
          }
        }
      }
    }
  }
}

// A device plan with a count above m + 1 and a block index above m: the kernel clamps the
// count, skips the block, and raises flags bits 0 and 1 (Plan::check_flags throws).
TEST(CudaAttend, CorruptPlanRaisesFlags) {
  SKIP_WITHOUT_GPU();
  WorkloadSpec spec;
  spec.seq_lens = {1000};
  spec.num_qo_heads = 8;
  spec.num_kv_heads = 2;
  spec.head_dim = 128;
  spec.dtype = DType::kBFloat16;
  spec.kind = WorkloadKind::kRandom;
  const Workload w = testing::make_workload(spec);
  for (int block : {64, 128}) {
    testing::Buffer host_ws;
    const Plan host_plan = testing::random_mask_plan(w.shape(), block, 0.5, 3, host_ws);
    const PlanLayout& l = host_plan.layout;
    host_plan.counts[l.head_index(0, 1, 3)] = 5;                         // m = 3: count <= 4
    host_plan.group_order[l.order_index(0, l.group_of_head(2), 4)] = 6;  // m = 4: index <= 4
    DeviceBuffer dev_ws(host_ws.size());
    const Plan plan = plan_to_device(host_plan, host_ws, dev_ws);
    DeviceRun run(w);
    for (const std::string& kernel : attend_kernels()) {
      ScopedAttendKernel scoped(kernel);
      const std::int32_t zeros[4] = {0, 0, 0, 0};
      cuda::copy_to_device(plan.flags, zeros, sizeof(zeros), Runtime{});
      attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
      cuda::synchronize(Runtime{});
      std::int32_t flags[4];
      cuda::copy_to_host(flags, plan.flags, sizeof(flags), Runtime{});
      EXPECT_EQ(flags[0], 3) << "b" << block << " [" << kernel << "]";
      EXPECT_THROW(plan.check_flags(), Error) << "b" << block << " [" << kernel << "]";
    }
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
  add({700, 100, 1299}, 8, 2, 128, DType::kFloat16, 128, 2, proxy, 0.0, structured);
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
    const Plan plan =
        proxyattn::plan(run.q_view, run.k_view, w.seqlens(), c.config, ws.workspace());
    attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
    cuda::synchronize(Runtime{});
    const HostPlan host = copy_to_host(plan);
    const auto ref_plan = reference::plan(testing::operands_of(w), c.config);
    const PlanConformance conf = check_plan(ref_plan, host.plan, c.config);
    EXPECT_TRUE(conf.ok) << conf.first_failure << " (budget mismatches " << conf.budget_mismatches
                         << ", selection mismatches " << conf.selection_mismatches << ")";
    const auto ref = gpu_reference_attend(w, c.config.block_size, host.plan.to_dense());
    expect_output_conforms(w, run.fetch(), ref, c.name);
    expect_attend_conforms(run, ref, c.name, [&] {
      attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
    });
    plan.check_flags();
  }
}

TEST(CudaPlan, PrefillIsBitwiseRepeatable) {
  SKIP_WITHOUT_GPU();
  const PlanCase c = plan_cases()[2];
  const Workload w = testing::make_workload(c.spec);
  DeviceRun run(w);
  DeviceBuffer ws(workspace_size(w.shape(), c.config));
  for (const std::string& kernel : attend_kernels()) {
    ScopedAttendKernel scoped(kernel);
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
    EXPECT_TRUE(outputs[0] == outputs[1]) << kernel;
    EXPECT_TRUE(masks[0] == masks[1]) << kernel;
  }
}

// Real learned inputs (data/qkv, the model issue's dump): plan conformance and output, both
// last-block modes, the densest (layer 3) and the sparsest (layer 7) layer.
TEST(CudaPlan, RealDumpConforms) {
  SKIP_WITHOUT_GPU();
  for (const char* layer : {"pa-tiny-8k-layer3", "pa-tiny-8k-layer7"}) {
    const std::string path =
        std::string(PROXYATTN_SOURCE_DIR) + "/data/qkv/" + layer + ".safetensors";
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
          const auto ref_plan = reference::plan(testing::operands_of(w), config);
          const PlanConformance conf = check_plan(ref_plan, host.plan, config);
          EXPECT_TRUE(conf.ok) << conf.first_failure;
          const auto ref = gpu_reference_attend(w, block, host.plan.to_dense());
          expect_output_conforms(w, run.fetch(), ref, name.str());
          expect_attend_conforms(run, ref, name.str(), [&] {
            attend(run.q_view, run.k_view, run.v_view, plan, run.o_view, &run.lse_view);
          });
        }
      }
    }
  }
}

}  // namespace
}  // namespace proxyattn
