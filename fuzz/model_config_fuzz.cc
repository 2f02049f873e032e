// fuzz/model_config_fuzz.cc: libFuzzer target for the model runner's config.json parser
// (runner::parse_model_config).
//
// Property: on any bytes, parse_model_config() returns or throws proxyattn::Error, and nothing else
// happens (ASan/UBSan watch the memory). A config it accepts is consistent: every size positive
// and within its bound, query heads a multiple of KV heads, an even head_dim, EOS/BOS ids inside
// the vocabulary, and finite positive RoPE frequencies.
//
// Build: cmake -B build-fuzz -DPROXYATTN_BUILD_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++
//              -DPROXYATTN_ENABLE_CUDA=OFF && cmake --build build-fuzz --target model_config_fuzz
// Run:   cp -r fuzz/config_corpus /tmp/config_corpus && ./build-fuzz/model_config_fuzz
//              -max_total_time=30 /tmp/config_corpus fuzz/config_corpus
//
// A PROXYATTN_BUILD_FUZZ build compiles the library and the runner with the fuzzer's coverage
// instrumentation (-fsanitize=fuzzer-no-link), so this target links proxyattn_runner.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "proxyattn/runner/model.h"
#include "proxyattn/types.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace r = proxyattn::runner;
  const std::string text(reinterpret_cast<const char*>(data), size);
  r::ModelConfig c;
  try {
    c = r::parse_model_config(text, "fuzz-config.json");
  } catch (const proxyattn::Error&) {
    return 0;
  }
  const bool dims_ok = c.vocab_size >= 1 && c.hidden_size >= 1 && c.intermediate_size >= 1 &&
                       c.num_layers >= 1 && c.num_qo_heads >= 1 && c.num_kv_heads >= 1 &&
                       c.head_dim >= 2 && c.head_dim % 2 == 0 && c.num_qo_heads % c.num_kv_heads == 0 &&
                       c.vocab_size <= r::kMaxConfigDim && c.hidden_size <= r::kMaxConfigDim &&
                       c.intermediate_size <= r::kMaxConfigDim;
  const bool ids_ok = c.bos_token_id >= -1 && c.bos_token_id < c.vocab_size;
  bool eos_ok = true;
  for (std::int64_t id : c.eos_token_ids) eos_ok = eos_ok && id >= 0 && id < c.vocab_size;
  const bool numbers_ok = std::isfinite(c.rms_norm_eps) && c.rms_norm_eps > 0 &&
                          std::isfinite(c.rope_theta) && c.rope_theta > 0;
  if (!dims_ok || !ids_ok || !eos_ok || !numbers_ok) std::abort();
  for (double f : c.rope_inv_freq()) {
    if (!std::isfinite(f) || f < 0) std::abort();
  }
  return 0;
}
