// bench/gpu/capi.cc: a tiny C ABI over the public API, loaded by bench_cuda.py through ctypes so
// that PyTorch tensors (device pointers) can be timed against SDPA in one process. Not a product
// API: errors go to pa_last_error(); packed [N, heads, head_dim] tensors, one sequence.
// Entries: pa_dense, pa_plan, pa_attend_last_plan, pa_prefill (the public API); pa_last_density and
// pa_last_block_mask (read the last plan back); pa_random_plan_* (docs/SPEC.md random masks).
// Public headers only (<proxyattn/...>, the oracle's workload generator for the random masks):
//   g++ -shared -fPIC -std=c++17 -Iinclude bench/gpu/capi.cc build/libproxyattn_oracle.a
//       build/libproxyattn.a -lcudart_static ... -o libproxyattn_capi.so
// (bench/gpu/run.sh does this.)
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "proxyattn/device.h"
#include "proxyattn/oracle/workload.h"
#include "proxyattn/proxyattn.h"

namespace {

using namespace proxyattn;

std::string g_error;

void require(bool ok, const std::string& what) {
  if (!ok) throw Error(what);
}

template <typename F>
int guarded(F&& f) {
  try {
    f();
    return 0;
  } catch (const std::exception& e) {
    g_error = e.what();
    return 1;
  }
}

DType dtype_of(int code) { return code == 1 ? DType::kFloat16 : DType::kBFloat16; }

struct Tensors {
  TensorView q, k, v, o;
  std::int32_t cu[2];
  CuSeqlens seqlens() const { return {cu, 2}; }
};

Tensors tensors(void* q, void* k, void* v, void* o, std::int64_t n, std::int64_t h,
                std::int64_t hkv, std::int64_t d, int dtype) {
  Tensors t;
  const DType dt = dtype_of(dtype);
  t.q = TensorView::contiguous(q, dt, {n, h, d}, Device::kCUDA);
  t.k = TensorView::contiguous(k, dt, {n, hkv, d}, Device::kCUDA);
  t.v = TensorView::contiguous(v, dt, {n, hkv, d}, Device::kCUDA);
  t.o = TensorView::contiguous(o, dt, {n, h, d}, Device::kCUDA);
  t.cu[0] = 0;
  t.cu[1] = static_cast<std::int32_t>(n);
  return t;
}

Config config_of(int block, int groups, double gamma, std::int64_t min_budget, double density,
                 int last_exact) {
  Config c;
  c.block_size = block;
  c.num_proxy_heads = groups;
  c.gamma = gamma;
  c.min_budget_tokens = min_budget;
  c.forced_density = density;
  c.last_block_selection = last_exact ? LastBlockSelection::kExact : LastBlockSelection::kProxy;
  return c;
}

// The last plan made by pa_plan / pa_prefill, for pa_last_density.
std::unique_ptr<Plan> g_plan;

// A random-mask plan on the device (docs/SPEC.md section 4), built on the host once.
struct RandomPlan {
  Buffer host_ws;
  Buffer device_ws;
  Plan plan;
  double density = 0.0;
};

}  // namespace

extern "C" {

const char* pa_last_error() { return g_error.c_str(); }

const char* pa_device_name() {
  static std::string name;
  name = device_name();
  return name.c_str();
}

std::int64_t pa_workspace_size(std::int64_t n, std::int64_t h, std::int64_t hkv, std::int64_t d,
                               int block, int groups, double gamma, std::int64_t min_budget,
                               double density, int last_exact) {
  std::int64_t size = -1;
  guarded([&] {
    ProblemShape s;
    s.total_tokens = n;
    s.num_qo_heads = h;
    s.num_kv_heads = hkv;
    s.head_dim = d;
    s.cu_seqlens = {0, static_cast<std::int32_t>(n)};
    size = static_cast<std::int64_t>(
        workspace_size(s, config_of(block, groups, gamma, min_budget, density, last_exact)));
  });
  return size;
}

int pa_dense(void* q, void* k, void* v, void* o, std::int64_t n, std::int64_t h, std::int64_t hkv,
             std::int64_t d, int dtype) {
  return guarded([&] {
    const Tensors t = tensors(q, k, v, o, n, h, hkv, d, dtype);
    dense(t.q, t.k, t.v, t.seqlens(), t.o);
  });
}

int pa_plan(void* q, void* k, std::int64_t n, std::int64_t h, std::int64_t hkv, std::int64_t d,
            int dtype, int block, int groups, double gamma, std::int64_t min_budget, double density,
            int last_exact, void* ws, std::int64_t ws_size) {
  return guarded([&] {
    const Tensors t = tensors(q, k, q, q, n, h, hkv, d, dtype);
    const Workspace w{ws, static_cast<std::size_t>(ws_size), Device::kCUDA, 0};
    g_plan = std::make_unique<Plan>(
        plan(t.q, t.k, t.seqlens(),
             config_of(block, groups, gamma, min_budget, density, last_exact), w));
  });
}

int pa_attend_last_plan(void* q, void* k, void* v, void* o, std::int64_t n, std::int64_t h,
                        std::int64_t hkv, std::int64_t d, int dtype) {
  return guarded([&] {
    const Tensors t = tensors(q, k, v, o, n, h, hkv, d, dtype);
    attend(t.q, t.k, t.v, *g_plan, t.o);
  });
}

int pa_prefill(void* q, void* k, void* v, void* o, std::int64_t n, std::int64_t h, std::int64_t hkv,
               std::int64_t d, int dtype, int block, int groups, double gamma,
               std::int64_t min_budget, double density, int last_exact, void* ws,
               std::int64_t ws_size) {
  return guarded([&] {
    const Tensors t = tensors(q, k, v, o, n, h, hkv, d, dtype);
    const Workspace w{ws, static_cast<std::size_t>(ws_size), Device::kCUDA, 0};
    g_plan = std::make_unique<Plan>(
        prefill(t.q, t.k, t.v, t.seqlens(),
                config_of(block, groups, gamma, min_budget, density, last_exact), w, t.o));
  });
}

/// Realized density of the last plan (synchronizes).
double pa_last_density() {
  double d = -1.0;
  guarded([&] {
    require(g_plan != nullptr, "no plan yet");
    d = g_plan->stats().density_weighted;
  });
  return d;
}

/// \brief The last plan's selected blocks, 0/1 bytes [heads, nb, nb] row-major (one sequence;
/// Plan::to_dense). Writes at most capacity bytes into out (host memory) and returns the size
/// the mask needs, or -1 on error. Synchronizes.
std::int64_t pa_last_block_mask(std::uint8_t* out, std::int64_t capacity) {
  std::int64_t size = -1;
  guarded([&] {
    require(g_plan != nullptr, "no plan yet");
    const std::vector<std::uint8_t> mask = g_plan->to_dense();
    const auto n = static_cast<std::int64_t>(mask.size());
    require(capacity >= n, "pa_last_block_mask: capacity " + std::to_string(capacity) + " < " +
                               std::to_string(n) + " bytes");
    std::memcpy(out, mask.data(), mask.size());
    size = n;
  });
  return size;
}

void* pa_random_plan_create(std::int64_t n, std::int64_t h, std::int64_t hkv, std::int64_t d,
                            int block, double density, std::uint64_t seed) {
  auto* rp = new RandomPlan;
  const int rc = guarded([&] {
    ProblemShape s;
    s.total_tokens = n;
    s.num_qo_heads = h;
    s.num_kv_heads = hkv;
    s.head_dim = d;
    s.cu_seqlens = {0, static_cast<std::int32_t>(n)};
    const Plan host = testing::random_mask_plan(s, block, density, seed, rp->host_ws);
    rp->density = host.stats().density_weighted;
    rp->device_ws = Buffer(rp->host_ws.size(), Device::kCUDA);
    rp->plan = copy_plan(host, rp->device_ws.workspace());
  });
  if (rc != 0) {
    delete rp;
    return nullptr;
  }
  return rp;
}

double pa_random_plan_density(void* handle) { return static_cast<RandomPlan*>(handle)->density; }

int pa_random_plan_attend(void* handle, void* q, void* k, void* v, void* o, std::int64_t n,
                          std::int64_t h, std::int64_t hkv, std::int64_t d, int dtype) {
  return guarded([&] {
    const Tensors t = tensors(q, k, v, o, n, h, hkv, d, dtype);
    attend(t.q, t.k, t.v, static_cast<RandomPlan*>(handle)->plan, t.o);
  });
}

void pa_random_plan_free(void* handle) { delete static_cast<RandomPlan*>(handle); }

}  // extern "C"
