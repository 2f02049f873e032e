// fuzz/api_fuzz.cc: libFuzzer target for the public entries' argument checks (docs/SPEC.md
// section 6).
//
// Property: for any shapes, strides, dtype, cu_seqlens, config and thread count, problem_shape(),
// workspace_size(), dense(), plan(), prefill() and attend() return or throw proxyattn::Error,
// nothing else (ASan/UBSan watch the memory); a rejected call writes nothing into out; an
// accepted workspace_size() is one the plan fits in; a plan whose layout fields were then edited
// is rejected (or still consistent) by attend(), stats() and to_dense(). Error messages stay one
// printable line.
//
// The operands view one zeroed arena. Entries that read data run only when every view the
// fuzzer built lies inside the arena (the library cannot know how much memory a caller owns);
// the shape-only entries always run.
//
// Input: raw bytes, read as the fields below in order (missing bytes read as 0).
// Run: ./build-fuzz/api_fuzz -max_total_time=60 /tmp/api_corpus fuzz/api_corpus
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "proxyattn/proxyattn.h"

namespace {

using proxyattn::Config;
using proxyattn::CuSeqlens;
using proxyattn::DType;
using proxyattn::Error;
using proxyattn::Plan;
using proxyattn::TensorView;

constexpr std::size_t kArenaBytes = 1 << 20;

struct Reader {
  const std::uint8_t* data;
  std::size_t size, at = 0;
  std::uint64_t u64(int bytes = 8) {
    std::uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v |= std::uint64_t{at < size ? data[at++] : 0u} << (8 * i);
    return v;
  }
  std::uint8_t u8() { return static_cast<std::uint8_t>(u64(1)); }
  // Mostly small values, sometimes any 64-bit value (negative, huge).
  std::int64_t size_like(std::int64_t small) {
    const std::uint8_t mode = u8();
    if (mode < 230) return static_cast<std::int64_t>(u64(2) % static_cast<std::uint64_t>(small + 1));
    return static_cast<std::int64_t>(u64());
  }
};

void check_message(const Error& e) {
  const std::string m = e.what();
  if (m.empty() || m.size() > 1000) std::abort();
  for (char c : m) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f) std::abort();
  }
}

// A [tokens, heads, head_dim] view into the arena: contiguous, or with fuzzed strides and offset.
TensorView view_of(Reader& r, std::uint8_t* arena, DType dtype, std::int64_t t, std::int64_t h,
                   std::int64_t d) {
  TensorView v = TensorView::contiguous(arena, dtype, {t, h, d});
  if (r.u8() >= 200) {
    for (int i = 0; i < 3; ++i) {
      const std::int64_t s = r.size_like(4096);
      v.strides[i] = r.u8() < 200 || s == INT64_MIN ? s : -s;
    }
  }
  v.data = arena + r.u64(2) % 4096;
  if (r.u8() >= 250) v.rank = static_cast<int>(r.u8() % 6);
  return v;
}

// Whether every element of v lies inside the arena (computed here, independently of the library).
bool inside(const TensorView& v, const std::uint8_t* arena) {
  if (v.rank < 0 || v.rank > TensorView::kMaxRank) return false;
  __int128 lo = 0, hi = 0;
  for (int i = 0; i < v.rank; ++i) {
    if (v.shape[i] < 0) return false;
    if (v.shape[i] == 0) return true;  // addresses nothing
    const __int128 span = static_cast<__int128>(v.shape[i] - 1) * v.strides[i];
    (span < 0 ? lo : hi) += span;
  }
  const __int128 esize = v.dtype == DType::kFloat32 ? 4 : 2;
  const __int128 base = static_cast<const std::uint8_t*>(v.data) - arena;
  return base + lo * esize >= 0 && base + (hi + 1) * esize <= static_cast<__int128>(kArenaBytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace proxyattn;  // NOLINT
  Reader r{data, size};
  static std::vector<std::uint8_t> arena_storage(kArenaBytes + 256);
  std::uint8_t* arena = arena_storage.data() + (256 - reinterpret_cast<std::uintptr_t>(
                                                          arena_storage.data()) % 256) % 256;
  std::memset(arena, 0, kArenaBytes);

  const DType dtype = r.u8() % 2 ? DType::kBFloat16 : DType::kFloat32;
  const std::int64_t tokens = r.size_like(300), kv = r.size_like(4);
  const std::int64_t heads = kv * (1 + r.u8() % 3) + (r.u8() >= 240 ? 1 : 0);
  const std::int64_t dim = r.u8() >= 240 ? r.size_like(600) : 8 * (1 + r.u8() % 8);
  TensorView q = view_of(r, arena, dtype, tokens, heads, dim);
  TensorView k = view_of(r, arena + kArenaBytes / 4, dtype, tokens, kv, dim);
  TensorView v = view_of(r, arena + kArenaBytes / 2, dtype, tokens, kv, dim);
  static std::vector<std::uint8_t> out_storage(kArenaBytes);
  std::memset(out_storage.data(), 0xA5, out_storage.size());
  TensorView out = view_of(r, out_storage.data(), dtype, tokens, heads, dim);
  std::vector<std::int32_t> cu;
  const int cu_size = r.u8() % 6;
  std::int32_t at = 0;
  for (int i = 0; i < cu_size; ++i) {
    if (i == 0 && r.u8() < 240) {
      cu.push_back(0);
      continue;
    }
    at = r.u8() < 200 ? at + static_cast<std::int32_t>(r.u64(1)) : static_cast<std::int32_t>(r.u64(4));
    cu.push_back(at);
  }
  if (!cu.empty() && r.u8() < 200) cu.back() = static_cast<std::int32_t>(tokens);
  const CuSeqlens seqs = cu.empty() ? CuSeqlens{} : CuSeqlens{cu.data(), static_cast<std::int64_t>(cu.size())};
  Config config;
  config.block_size = r.u8() % 2 ? 64 : 128;
  config.stride = 1 << (r.u8() % 8);
  config.min_budget_tokens = r.size_like(256);
  config.dense_below_tokens = r.u8() % 2 ? 0 : Config::kAuto;
  config.num_proxy_heads = static_cast<int>(1 + r.u8() % 4);
  config.gamma = (1 + r.u8()) / 256.0;
  Runtime runtime;
  runtime.num_threads = static_cast<int>(r.u8() % 4) - (r.u8() >= 250 ? 5 : 0);
  const bool readable = inside(q, arena) && inside(k, arena) && inside(v, arena) &&
                        inside(out, out_storage.data());

  std::size_t ws_bytes = 0;
  try {
    ws_bytes = workspace_size(problem_shape(q, k, seqs), config);
  } catch (const Error& e) {
    check_message(e);
  }
  if (!readable || ws_bytes > (std::size_t{64} << 20)) return 0;
  auto untouched = [&] {
    for (std::uint8_t b : out_storage) {
      if (b != 0xA5) return false;
    }
    return true;
  };
  try {
    dense(q, k, v, seqs, out, nullptr, 0.0f, runtime);
  } catch (const Error& e) {
    check_message(e);
    if (!untouched()) std::abort();
  }
  Buffer ws(ws_bytes);
  try {
    Plan p = plan(q, k, seqs, config, ws.workspace(), runtime);
    attend(q, k, v, p, out, nullptr, runtime);
    // Edit one layout field and check that every reader refuses or copes.
    const std::uint8_t which = r.u8() % 6;
    const std::int64_t value = r.size_like(300);
    PlanLayout& l = p.layout;
    if (which == 0) l.block_size = value;
    if (which == 1 && !l.num_blocks.empty()) l.num_blocks[value % l.num_blocks.size()] = value;
    if (which == 2) l.batch = value;
    if (which == 3 && !l.head_offset.empty()) l.head_offset.back() = value;
    if (which == 4) l.num_proxy_heads = value;
    if (which == 5 && !l.cu_seqlens.empty()) l.cu_seqlens.back() = static_cast<std::int32_t>(value);
    try {
      p.stats();
      p.to_dense();
      std::memset(out_storage.data(), 0xA5, out_storage.size());
      attend(q, k, v, p, out, nullptr, runtime);
    } catch (const Error& e) {
      check_message(e);
    }
  } catch (const Error& e) {
    check_message(e);
  }
  return 0;
}
