// fuzz/safetensors_fuzz.cc: libFuzzer target for safetensors::parse.
//
// Property: on any bytes, parse() returns or throws proxyattn::Error, and nothing else happens
// (ASan/UBSan watch the memory). A file it accepts must serialize without error and parse back to
// the same tensors and metadata; to_qkv() on it must return or throw Error.
//
// Build: cmake -B build-fuzz -DPROXYATTN_BUILD_FUZZ=ON -DCMAKE_CXX_COMPILER=clang++
//              -DPROXYATTN_ENABLE_CUDA=OFF && cmake --build build-fuzz --target safetensors_fuzz
// Run:   cp -r fuzz/corpus /tmp/st_corpus && ./build-fuzz/safetensors_fuzz -max_total_time=60
//              /tmp/st_corpus fuzz/corpus
// (libFuzzer adds new inputs to the first directory, hence the copy.)
//
// A PROXYATTN_BUILD_FUZZ build compiles the whole library with the fuzzer's coverage
// instrumentation (-fsanitize=fuzzer-no-link), so this target links libproxyattn as any user does.
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "proxyattn/safetensors.h"
#include "proxyattn/types.h"

namespace {

bool same_file(const proxyattn::safetensors::File& a, const proxyattn::safetensors::File& b) {
  if (a.tensors.size() != b.tensors.size() || a.metadata != b.metadata) return false;
  for (std::size_t i = 0; i < a.tensors.size(); ++i) {
    const auto& x = a.tensors[i];
    const auto& y = b.tensors[i];
    if (x.name != y.name || x.dtype != y.dtype || x.shape != y.shape || x.data != y.data) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace st = proxyattn::safetensors;
  st::File file;
  try {
    file = st::parse(data, size, "fuzz-input");
  } catch (const proxyattn::Error&) {
    return 0;
  }
  // An Error from here on is a bug: it escapes and libFuzzer reports the abort.
  const std::vector<std::uint8_t> bytes = st::serialize(file);
  if (!same_file(file, st::parse(bytes.data(), bytes.size(), "fuzz-round-trip"))) std::abort();
  try {
    st::to_qkv(file, "fuzz-input");
  } catch (const proxyattn::Error&) {
  }
  return 0;
}
