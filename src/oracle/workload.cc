// src/oracle/workload.cc: random and structured problems, outputs, random-mask plans.
#include "proxyattn/oracle/workload.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>

#include "common/check.h"
#include "common/numeric.h"

namespace proxyattn::testing {

WorkloadKind parse_workload(const std::string& name) {
  if (name == "random") return WorkloadKind::kRandom;
  if (name == "structured") return WorkloadKind::kStructured;
  if (name == "ones") return WorkloadKind::kOnes;
  if (name == "arange") return WorkloadKind::kArange;
  PROXYATTN_FAIL("workload = '", name, "', expected random, structured, ones or arange");
}

const char* to_string(WorkloadKind kind) {
  switch (kind) {
    case WorkloadKind::kRandom: return "random";
    case WorkloadKind::kStructured: return "structured";
    case WorkloadKind::kOnes: return "ones";
    case WorkloadKind::kArange: return "arange";
  }
  return "unknown";
}

std::uint64_t mix_seed(std::uint64_t seed, std::uint64_t stream) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ull * (stream + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

TensorView Workload::q_view() const {
  return TensorView::contiguous(q.data(), spec.dtype, {total_tokens, spec.num_qo_heads, spec.head_dim});
}
TensorView Workload::k_view() const {
  return TensorView::contiguous(k.data(), spec.dtype, {total_tokens, spec.num_kv_heads, spec.head_dim});
}
TensorView Workload::v_view() const {
  return TensorView::contiguous(v.data(), spec.dtype, {total_tokens, spec.num_kv_heads, spec.head_dim});
}

ProblemShape Workload::shape() const {
  ProblemShape s;
  s.total_tokens = total_tokens;
  s.num_qo_heads = spec.num_qo_heads;
  s.num_kv_heads = spec.num_kv_heads;
  s.head_dim = spec.head_dim;
  s.cu_seqlens = cu_seqlens;
  return s;
}

namespace {

// Float staging for one tensor [tokens, heads, head_dim].
struct Staging {
  std::int64_t heads, dim;
  std::vector<float> x;
  float& at(std::int64_t t, std::int64_t h, std::int64_t d) { return x[(t * heads + h) * dim + d]; }
};

void fill_normal(Staging& s, std::uint64_t seed, float stddev) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  for (float& e : s.x) e = normal(rng);
}

// Structured attention, built into the logits scale * <q, k> (scale = 1/sqrt(d)):
//   local decay: RoPE-like pairs cos/sin(w t) in the first quarter of the dims, so nearby keys
//     score higher (several frequencies);
//   sinks: the first 4 tokens of each sequence hold a shared direction every query has;
//   vertical stripes: a few random key positions hold a second shared direction;
//   head sharpness: query head h is scaled by a factor from 0.3 to 3, so heads range from flat
//     (dense budgets) to sharp (small budgets);
//   needles: 2 random keys per sequence hold their own direction, which the last query block of
//     the sequence holds, so retrieval is needed.
void add_structure(const WorkloadSpec& spec, const std::vector<std::int32_t>& cu, Staging& q,
                   Staging& k, std::vector<Needle>& needles) {
  const std::int64_t D = spec.head_dim, Hq = spec.num_qo_heads, Hk = spec.num_kv_heads;
  const float sqrt_d = std::sqrt(static_cast<float>(D));
  const std::int64_t pairs = std::max<std::int64_t>(1, D / 8);  // rope pairs in dims [0, 2 pairs)
  const std::int64_t sink_dim = 2 * pairs, stripe_dim = sink_dim + 1, needle_dim = sink_dim + 2;
  std::mt19937_64 rng(mix_seed(spec.seed, 99));
  const float rope_amp = std::sqrt(6.0f * sqrt_d / static_cast<float>(pairs));  // ~6 logits at u = t
  for (std::size_t i = 0; i + 1 < cu.size(); ++i) {
    const std::int64_t start = cu[i], n = cu[i + 1] - cu[i];
    if (n == 0) continue;
    std::uniform_int_distribution<std::int64_t> pos(0, n - 1);
    std::vector<std::int64_t> stripes;
    for (int e = 0; e < 6; ++e) stripes.push_back(pos(rng));
    std::vector<std::int64_t> needle_pos;
    for (int e = 0; e < 2 && needle_dim + e < D; ++e) {
      needle_pos.push_back(n > 256 ? 64 + pos(rng) % (n - 256 + 1) : pos(rng));
      needles.push_back({static_cast<std::int64_t>(i), needle_pos.back()});
    }
    for (std::int64_t t = 0; t < n; ++t) {
      for (std::int64_t f = 0; f < pairs; ++f) {
        const float w = std::pow(0.5f, static_cast<float>(f) + 2.0f);  // periods 8 to ...
        const float c = std::cos(w * static_cast<float>(t)), s = std::sin(w * static_cast<float>(t));
        for (std::int64_t h = 0; h < Hq; ++h) {
          q.at(start + t, h, 2 * f) += rope_amp * c;
          q.at(start + t, h, 2 * f + 1) += rope_amp * s;
        }
        for (std::int64_t h = 0; h < Hk; ++h) {
          k.at(start + t, h, 2 * f) += rope_amp * c;
          k.at(start + t, h, 2 * f + 1) += rope_amp * s;
        }
      }
      for (std::int64_t h = 0; h < Hq; ++h) {
        q.at(start + t, h, sink_dim) += 1.0f;
        q.at(start + t, h, stripe_dim) += 1.0f;
      }
      const bool sink = t < 4;
      const bool stripe = std::find(stripes.begin(), stripes.end(), t) != stripes.end();
      for (std::int64_t h = 0; h < Hk; ++h) {
        if (sink) k.at(start + t, h, sink_dim) += 8.0f * sqrt_d;
        if (stripe) k.at(start + t, h, stripe_dim) += 5.0f * sqrt_d;
      }
    }
    const std::int64_t last_block_start = std::max<std::int64_t>(0, n - 128);
    for (std::size_t e = 0; e < needle_pos.size(); ++e) {
      const std::int64_t dim = needle_dim + static_cast<std::int64_t>(e);
      for (std::int64_t h = 0; h < Hk; ++h) k.at(start + needle_pos[e], h, dim) += 3.0f * sqrt_d;
      for (std::int64_t t = last_block_start; t < n; ++t) {
        for (std::int64_t h = 0; h < Hq; ++h) q.at(start + t, h, dim) += 4.0f;
      }
    }
  }
  for (std::int64_t t = 0; t < static_cast<std::int64_t>(q.x.size() / (Hq * D)); ++t) {
    for (std::int64_t h = 0; h < Hq; ++h) {
      const float sharp = Hq == 1 ? 1.0f : 0.3f + 2.7f * static_cast<float>(h) / static_cast<float>(Hq - 1);
      for (std::int64_t d = 0; d < D; ++d) q.at(t, h, d) *= sharp;
    }
  }
}

Buffer to_dtype(const Staging& s, DType dtype) {
  Buffer b(s.x.size() * dtype_size(dtype));
  for (std::size_t e = 0; e < s.x.size(); ++e) {
    store_float(b.data(), dtype, static_cast<std::int64_t>(e), s.x[e]);
  }
  return b;
}

}  // namespace

Workload make_workload(const WorkloadSpec& spec) {
  // Every size is checked before anything is allocated: the spec may come from a command line.
  PROXYATTN_CHECK(spec.num_qo_heads >= 1, "workload num_qo_heads = ", spec.num_qo_heads,
                  ", expected >= 1");
  PROXYATTN_CHECK(spec.num_kv_heads >= 1 && spec.num_qo_heads % spec.num_kv_heads == 0,
                  "workload heads ", spec.num_qo_heads, "/", spec.num_kv_heads,
                  ", expected num_kv_heads >= 1 dividing num_qo_heads");
  PROXYATTN_CHECK(spec.head_dim >= 8, "workload head_dim = ", spec.head_dim, ", expected >= 8");
  std::int64_t total = 0;
  for (std::int32_t n : spec.seq_lens) {
    PROXYATTN_CHECK(n >= 0, "workload sequence length = ", n, ", expected >= 0");
    total += n;
    PROXYATTN_CHECK(total <= std::numeric_limits<std::int32_t>::max(), "workload total tokens ",
                    total, " exceed the int32 cu_seqlens range");
  }
  // [tokens, heads, head_dim] staged as float, then converted: bytes must fit the address space.
  std::int64_t elements = 0, bytes = 0;
  PROXYATTN_CHECK(!__builtin_mul_overflow(total, spec.num_qo_heads, &elements) &&
                      !__builtin_mul_overflow(elements, spec.head_dim, &elements) &&
                      !__builtin_mul_overflow(elements, std::int64_t{2 * sizeof(float)}, &bytes) &&
                      bytes <= std::numeric_limits<std::ptrdiff_t>::max() / 4,
                  "workload of ", total, " tokens x ", spec.num_qo_heads, " heads x head_dim ",
                  spec.head_dim, " is too large to allocate");
  Workload w;
  w.spec = spec;
  w.cu_seqlens.push_back(0);
  for (std::int32_t n : spec.seq_lens) w.cu_seqlens.push_back(w.cu_seqlens.back() + n);
  w.total_tokens = w.cu_seqlens.back();
  const std::int64_t T = w.total_tokens, D = spec.head_dim;
  Staging q{spec.num_qo_heads, D, std::vector<float>(T * spec.num_qo_heads * D)};
  Staging k{spec.num_kv_heads, D, std::vector<float>(T * spec.num_kv_heads * D)};
  Staging v{spec.num_kv_heads, D, std::vector<float>(T * spec.num_kv_heads * D)};
  switch (spec.kind) {
    case WorkloadKind::kRandom:
      fill_normal(q, mix_seed(spec.seed, 1), 1.0f);
      fill_normal(k, mix_seed(spec.seed, 2), 1.0f);
      fill_normal(v, mix_seed(spec.seed, 3), 1.0f);
      break;
    case WorkloadKind::kStructured:
      fill_normal(q, mix_seed(spec.seed, 1), 0.5f);
      fill_normal(k, mix_seed(spec.seed, 2), 0.5f);
      fill_normal(v, mix_seed(spec.seed, 3), 1.0f);
      add_structure(spec, w.cu_seqlens, q, k, w.needles);
      break;
    case WorkloadKind::kOnes:
      for (Staging* s : {&q, &k, &v}) std::fill(s->x.begin(), s->x.end(), 1.0f);
      break;
    case WorkloadKind::kArange:
      for (Staging* s : {&q, &k, &v}) {
        for (std::size_t e = 0; e < s->x.size(); ++e) s->x[e] = static_cast<float>(e % 17) / 17.0f;
      }
      break;
  }
  w.q = to_dtype(q, spec.dtype);
  w.k = to_dtype(k, spec.dtype);
  w.v = to_dtype(v, spec.dtype);
  return w;
}

Workload make_workload(std::vector<std::int32_t> seq_lens, std::int64_t num_qo_heads,
                       std::int64_t num_kv_heads, std::int64_t head_dim, DType dtype,
                       WorkloadKind kind, std::uint64_t seed) {
  WorkloadSpec spec;
  spec.seq_lens = std::move(seq_lens);
  spec.num_qo_heads = num_qo_heads;
  spec.num_kv_heads = num_kv_heads;
  spec.head_dim = head_dim;
  spec.dtype = dtype;
  spec.kind = kind;
  spec.seed = seed;
  return make_workload(spec);
}

Workload workload_from_tensors(DType dtype, std::int64_t tokens, std::int64_t num_qo_heads,
                               std::int64_t num_kv_heads, std::int64_t head_dim, const void* q,
                               const void* k, const void* v, std::vector<std::int32_t> cu_seqlens) {
  Workload w;
  w.spec.num_qo_heads = num_qo_heads;
  w.spec.num_kv_heads = num_kv_heads;
  w.spec.head_dim = head_dim;
  w.spec.dtype = dtype;
  w.total_tokens = tokens;
  w.cu_seqlens = cu_seqlens.empty() ? std::vector<std::int32_t>{0, static_cast<std::int32_t>(tokens)}
                                    : std::move(cu_seqlens);
  w.spec.seq_lens.clear();
  for (std::size_t i = 0; i + 1 < w.cu_seqlens.size(); ++i) {
    w.spec.seq_lens.push_back(w.cu_seqlens[i + 1] - w.cu_seqlens[i]);
  }
  const std::size_t e = dtype_size(dtype);
  w.q = Buffer(tokens * num_qo_heads * head_dim * e);
  w.k = Buffer(tokens * num_kv_heads * head_dim * e);
  w.v = Buffer(tokens * num_kv_heads * head_dim * e);
  std::memcpy(w.q.data(), q, w.q.size());
  std::memcpy(w.k.data(), k, w.k.size());
  std::memcpy(w.v.data(), v, w.v.size());
  return w;
}

Output make_output(const Workload& w) {
  Output out;
  const std::int64_t T = w.total_tokens, H = w.spec.num_qo_heads;
  out.o = Buffer(T * H * w.spec.head_dim * dtype_size(w.spec.dtype));
  out.lse = Buffer(T * H * sizeof(float));
  out.o_view = TensorView::contiguous(out.o.data(), w.spec.dtype, {T, H, w.spec.head_dim});
  out.lse_view = TensorView::contiguous(out.lse.data(), DType::kFloat32, {H, T});
  return out;
}

Plan random_mask_plan(const ProblemShape& shape, int block_size, double density,
                      std::uint64_t seed, Buffer& workspace) {
  Config config;
  config.block_size = block_size;
  config.num_proxy_heads = static_cast<int>(shape.num_kv_heads);
  config.min_budget_tokens = 0;
  config.dense_below_tokens = 0;
  const std::size_t bytes = workspace_size(shape, config);
  if (workspace.size() < bytes) workspace = Buffer(bytes);
  std::vector<std::uint8_t> mask;
  const std::int64_t H = shape.num_qo_heads, r = shape.group_size();
  for (std::int64_t i = 0; i < shape.batch(); ++i) {
    const std::int64_t nb = (shape.seq_len(i) + block_size - 1) / block_size;
    std::vector<std::uint8_t> seq_mask(H * nb * nb, 0);
    for (std::int64_t kv = 0; kv < shape.num_kv_heads; ++kv) {
      for (std::int64_t m = 0; m < nb; ++m) {
        std::vector<std::int64_t> order;
        for (std::int64_t n = 1; n < m; ++n) order.push_back(n);
        std::mt19937_64 rng(mix_seed(mix_seed(seed, static_cast<std::uint64_t>(kv)), static_cast<std::uint64_t>(m)));
        std::shuffle(order.begin(), order.end(), rng);
        order.insert(order.begin(), 0);
        if (m > 0) order.insert(order.begin() + 1, m);
        const std::int64_t want = static_cast<std::int64_t>(std::ceil(density * static_cast<double>(m + 1)));
        const std::int64_t count = std::min<std::int64_t>(m + 1, std::max<std::int64_t>(2, want));
        for (std::int64_t h = kv * r; h < (kv + 1) * r; ++h) {
          for (std::int64_t e = 0; e < count; ++e) seq_mask[(h * nb + m) * nb + order[e]] = 1;
        }
      }
    }
    mask.insert(mask.end(), seq_mask.begin(), seq_mask.end());
  }
  return plan_from_block_mask(shape, block_size, config.num_proxy_heads, mask.data(),
                              workspace.workspace());
}

}  // namespace proxyattn::testing
