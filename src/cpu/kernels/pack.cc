// src/cpu/kernels/pack.cc: packs one key block of K and V into a kernel's layout (kernels.h,
// PackLayout). Runs once per (KV head, key block) per call; the heads of a GQA group and every
// query block share the result. Baseline code.
#include <cmath>
#include <cstring>

#include "common/numeric.h"
#include "cpu/kernels/kernels.h"

namespace proxyattn::cpu::kernels {

void pack_block(PackLayout layout, bool bf16, int b, int d, int dp, const void* k,
                std::int64_t k_stride, const void* v, std::int64_t v_stride, int cols, void* k_dst,
                void* v_dst, Isa isa) {
  const std::size_t bytes = packed_block_bytes(layout, b, dp);
  if (cols < b || dp != d) {
    std::memset(k_dst, 0, bytes);
    std::memset(v_dst, 0, bytes);
  }
  if (layout == PackLayout::kBf16Pairs) {
    if (isa != Isa::kScalar) {
      pack_bf16_pairs_avx512(b, d, dp, static_cast<const std::uint16_t*>(k), k_stride,
                             static_cast<const std::uint16_t*>(v), v_stride, cols,
                             static_cast<std::uint16_t*>(k_dst), static_cast<std::uint16_t*>(v_dst));
      return;
    }
    // K [d/2][b][2]: a 32-bit transpose of K viewed as [keys][d/2] dwords.
    // Pair-major: sequential writes, reads from the block's rows (L1-resident).
    auto* kd = static_cast<std::uint32_t*>(k_dst);
    const auto* ks = static_cast<const std::uint16_t*>(k);
    for (int p = 0; p < d / 2; ++p) {
      std::uint32_t* dst = kd + static_cast<std::size_t>(p) * b;
      for (int t = 0; t < cols; ++t) {
        std::uint32_t w;
        std::memcpy(&w, ks + t * k_stride + 2 * p, sizeof(w));
        dst[t] = w;
      }
    }
    // V [b/2][dp][2]: rows t and t + 1 interleaved.
    auto* vd = static_cast<std::uint16_t*>(v_dst);
    const auto* vs = static_cast<const std::uint16_t*>(v);
    for (int t = 0; t < cols; ++t) {
      const std::uint16_t* row = vs + t * v_stride;
      std::uint16_t* dst = vd + static_cast<std::size_t>(t / 2) * dp * 2 + (t & 1);
      for (int c = 0; c < d; ++c) dst[2 * c] = row[c];
    }
    return;
  }
  // fp32: K [d][b], V [b][dp].
  auto* kd = static_cast<float*>(k_dst);
  auto* vd = static_cast<float*>(v_dst);
  for (int c = 0; c < d; ++c) {  // dimension-major: sequential writes
    float* dst = kd + static_cast<std::size_t>(c) * b;
    if (bf16) {
      const auto* ks = static_cast<const std::uint16_t*>(k) + c;
      for (int t = 0; t < cols; ++t) dst[t] = bf16_to_float(ks[t * k_stride]);
    } else {
      const auto* ks = static_cast<const float*>(k) + c;
      for (int t = 0; t < cols; ++t) dst[t] = ks[t * k_stride];
    }
  }
  for (int t = 0; t < cols; ++t) {
    float* vrow = vd + static_cast<std::size_t>(t) * dp;
    if (bf16) {
      const auto* vs = static_cast<const std::uint16_t*>(v) + t * v_stride;
      for (int c = 0; c < d; ++c) vrow[c] = bf16_to_float(vs[c]);
    } else {
      std::memcpy(vrow, static_cast<const float*>(v) + t * v_stride, sizeof(float) * d);
    }
  }
}

void scale_packed_v(PackLayout layout, int b, int dp, int e, void* v_block) {
  const std::size_t n = static_cast<std::size_t>(b) * dp;
  if (layout == PackLayout::kBf16Pairs) {
    auto* v = static_cast<std::uint16_t*>(v_block);
    for (std::size_t i = 0; i < n; ++i) v[i] = float_to_bf16(std::ldexp(bf16_to_float(v[i]), e));
  } else {
    auto* v = static_cast<float*>(v_block);
    for (std::size_t i = 0; i < n; ++i) v[i] = std::ldexp(v[i], e);
  }
}

}  // namespace proxyattn::cpu::kernels
