// examples/find_package/main.cc: ProxyAttn prefill of one 4096-token sequence on the CPU, with
// the installed library. Build: cmake -S . -B build -DCMAKE_PREFIX_PATH=<prefix> && cmake --build build
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include <proxyattn/proxyattn.h>

int main() {
  const std::int64_t tokens = 4096, heads = 4, kv_heads = 1, dim = 64;
  std::vector<float> q(tokens * heads * dim), k(tokens * kv_heads * dim), v(k.size());
  std::vector<float> out(q.size()), lse(heads * tokens);
  std::srand(1);
  for (auto* x : {&q, &k, &v}) {
    for (float& e : *x) e = static_cast<float>(std::rand()) / RAND_MAX - 0.5f;
  }
  using proxyattn::DType;
  using proxyattn::TensorView;
  const TensorView tq = TensorView::contiguous(q.data(), DType::kFloat32, {tokens, heads, dim});
  const TensorView tk = TensorView::contiguous(k.data(), DType::kFloat32, {tokens, kv_heads, dim});
  const TensorView tv = TensorView::contiguous(v.data(), DType::kFloat32, {tokens, kv_heads, dim});
  const TensorView to = TensorView::contiguous(out.data(), DType::kFloat32, {tokens, heads, dim});
  const TensorView tl = TensorView::contiguous(lse.data(), DType::kFloat32, {heads, tokens});

  proxyattn::Config config;
  config.min_budget_tokens = 512;
  const proxyattn::ProblemShape shape = proxyattn::problem_shape(tq, tk, {});
  const std::size_t bytes = proxyattn::workspace_size(shape, config);
  void* memory = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  const proxyattn::Workspace workspace{memory, bytes};
  try {
    const proxyattn::Plan plan =
        proxyattn::prefill(tq, tk, tv, {}, config, workspace, to, &tl);
    std::printf("proxyattn %s: density %.3f, lse[0][last] %.4f\n", PROXYATTN_VERSION_STRING,
                plan.stats().density_weighted, lse[tokens - 1]);
  } catch (const proxyattn::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    std::free(memory);
    return 1;
  }
  std::free(memory);
  return 0;
}
