// src/runner/runner.cc: prefill and greedy decoding of a Llama-family model on the CPU.
//
// Per layer (HF LlamaDecoderLayer):  h = rmsnorm(x) ; q, k, v = h Wq^T (+bq), h Wk^T, h Wv^T ;
// rope(q, k) ; a = attention(q, k, v) ; x += a Wo^T ; h = rmsnorm(x) ;
// x += (silu(h Wg^T) * (h Wu^T)) Wd^T.  logits = rmsnorm(x_last) Wout^T.
#include "proxyattn/runner/runner.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include "proxyattn/prefill.h"
#include "proxyattn/types.h"
#include "src/runner/util.h"

namespace proxyattn::runner {

namespace {

// out[r] = x[r] / rms(x[r]) * weight, for rows of width D.
void rmsnorm(const float* x, const float* weight, std::int64_t rows, std::int64_t D, double eps,
             float* out) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * D;  // [D]
    float* yr = out + r * D;      // [D]
    float ss = 0.0f;
    for (std::int64_t i = 0; i < D; ++i) ss += xr[i] * xr[i];
    const float inv = 1.0f / std::sqrt(ss / static_cast<float>(D) + static_cast<float>(eps));
    for (std::int64_t i = 0; i < D; ++i) yr[i] = weight[i] * (xr[i] * inv);
  }
}

// C[M, N] = A[M, K] B[N, K]^T + beta C.
void gemm_nt(const float* A, const float* B, float* C, std::int64_t M, std::int64_t N,
             std::int64_t K, float beta) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M),
              static_cast<blasint>(N), static_cast<blasint>(K), 1.0f, A, static_cast<blasint>(K), B,
              static_cast<blasint>(K), beta, C, static_cast<blasint>(N));
}

// y[N] = W[N, K] x[K] + beta y.
void gemv(const float* W, const float* x, float* y, std::int64_t N, std::int64_t K, float beta) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, static_cast<blasint>(N), static_cast<blasint>(K), 1.0f,
              W, static_cast<blasint>(K), x, 1, beta, y, 1);
}

void add_bias(float* x, const std::vector<float>& bias, std::int64_t rows) {
  if (bias.empty()) return;
  const std::int64_t n = static_cast<std::int64_t>(bias.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t i = 0; i < n; ++i) x[r * n + i] += bias[static_cast<std::size_t>(i)];
  }
}

// Rotates the heads of rows [pos0, pos0 + rows) in place (HF rotate_half convention).
void apply_rope(float* x, std::int64_t rows, std::int64_t heads, std::int64_t d, std::int64_t pos0,
                const std::vector<float>& cos_t, const std::vector<float>& sin_t) {
  const std::int64_t half = d / 2;
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* c = &cos_t[static_cast<std::size_t>((pos0 + r) * half)];  // [d / 2]
    const float* s = &sin_t[static_cast<std::size_t>((pos0 + r) * half)];  // [d / 2]
    for (std::int64_t h = 0; h < heads; ++h) {
      float* v = x + (r * heads + h) * d;  // [d]
      for (std::int64_t i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * c[i] - x1 * s[i];
        v[i + half] = x1 * c[i] + x0 * s[i];
      }
    }
  }
}

constexpr std::size_t kWorkspaceAlign = 256;

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }

std::int64_t argmax(const std::vector<float>& v) {
  return static_cast<std::int64_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

}  // namespace

const char* to_string(AttentionMode mode) {
  return mode == AttentionMode::kProxy ? "proxy" : "dense";
}

AttentionMode parse_attention_mode(const std::string& name) {
  if (name == "dense") return AttentionMode::kDense;
  if (name == "proxy") return AttentionMode::kProxy;
  RUNNER_FAIL("attention mode '", printable(name, 40), "', expected dense or proxy");
}

double PrefillStats::mean_density() const {
  if (density.empty()) return 0.0;
  double s = 0.0;
  for (double d : density) s += d;
  return s / static_cast<double>(density.size());
}

double Generation::decode_tokens_per_s() const {
  return decode_ms > 0.0 ? 1000.0 * static_cast<double>(decode_steps) / decode_ms : 0.0;
}

void rope_tables(const ModelConfig& config, std::int64_t tokens, std::vector<float>& cos_table,
                 std::vector<float>& sin_table) {
  const std::vector<double> inv = config.rope_inv_freq();
  const std::int64_t half = config.head_dim / 2;
  const std::size_t n = static_cast<std::size_t>(checked_mul(tokens, half, "RoPE table size"));
  cos_table.resize(n);
  sin_table.resize(n);
  for (std::int64_t t = 0; t < tokens; ++t) {
    for (std::int64_t i = 0; i < half; ++i) {
      const float angle =
          static_cast<float>(t) * static_cast<float>(inv[static_cast<std::size_t>(i)]);
      cos_table[static_cast<std::size_t>(t * half + i)] =
          static_cast<float>(std::cos(static_cast<double>(angle)));
      sin_table[static_cast<std::size_t>(t * half + i)] =
          static_cast<float>(std::sin(static_cast<double>(angle)));
    }
  }
}

Session::Session(const Model& model, const RunOptions& options, std::int64_t max_tokens)
    : model_(&model), options_(options), max_tokens_(max_tokens) {
  const ModelConfig& c = model.config;
  RUNNER_CHECK(max_tokens >= 1 && max_tokens <= (std::int64_t{1} << 31),
               "max_tokens = ", max_tokens, ", expected 1 .. 2^31");
  RUNNER_CHECK(options.chunk_tokens >= 1, "chunk_tokens = ", options.chunk_tokens,
               ", expected >= 1");
  RUNNER_CHECK(options.num_threads >= 0, "num_threads = ", options.num_threads,
               ", expected >= 0 (0 = all hardware threads)");
  if (options.attention == AttentionMode::kProxy) options.config.validate();
  const std::int64_t kv = c.num_kv_heads * c.head_dim;
  const std::int64_t cache = checked_mul(max_tokens, kv, "KV cache size");
  checked_mul(checked_mul(cache, c.num_layers, "KV cache size"), 8, "KV cache bytes");
  k_cache_.assign(static_cast<std::size_t>(c.num_layers),
                  std::vector<float>(static_cast<std::size_t>(cache)));
  v_cache_.assign(static_cast<std::size_t>(c.num_layers),
                  std::vector<float>(static_cast<std::size_t>(cache)));
  rope_tables(c, max_tokens, rope_cos_, rope_sin_);
  if (options.num_threads > 0) openblas_set_num_threads(options.num_threads);
}

std::vector<float> Session::prefill(const std::vector<std::int32_t>& tokens, PrefillStats* stats,
                                    const PrefillHooks& hooks) {
  const ModelConfig& c = model_->config;
  const std::int64_t T = static_cast<std::int64_t>(tokens.size());
  RUNNER_CHECK(position_ == 0, "prefill: the session already holds ", position_, " tokens");
  RUNNER_CHECK(T >= 1 && T <= max_tokens_, "prefill: ", T, " prompt tokens, expected 1 .. ",
               max_tokens_, " (the session's capacity)");
  for (std::int64_t t = 0; t < T; ++t) {
    const std::int32_t id = tokens[static_cast<std::size_t>(t)];
    RUNNER_CHECK(id >= 0 && id < c.vocab_size, "prefill: token ", t, " = ", id,
                 ", expected an id in [0, ", c.vocab_size, ")");
  }
  const double t_start = now_ms();
  const std::int64_t D = c.hidden_size, F = c.intermediate_size, d = c.head_dim;
  const std::int64_t Hq = c.num_qo_heads, Hkv = c.num_kv_heads, qo = Hq * d, kv = Hkv * d;
  const std::int64_t chunk = std::min(options_.chunk_tokens, T);
  std::vector<float> x(static_cast<std::size_t>(checked_mul(T, D, "hidden states")));  // [T, D]
  std::vector<float> h(x.size());                                                      // [T, D]
  std::vector<float> q(static_cast<std::size_t>(checked_mul(T, qo, "queries")));       // [T, Hq, d]
  std::vector<float> attn(q.size());                                                   // [T, Hq, d]
  std::vector<float> gate(
      static_cast<std::size_t>(checked_mul(chunk, F, "MLP chunk")));  // [chunk, F]
  std::vector<float> up(gate.size());                                 // [chunk, F]
  for (std::int64_t t = 0; t < T; ++t) {
    const float* e =
        &model_->embed[static_cast<std::size_t>(tokens[static_cast<std::size_t>(t)] * D)];
    std::copy(e, e + D, &x[static_cast<std::size_t>(t * D)]);
  }
  const Runtime runtime{options_.num_threads, nullptr, false};
  const bool proxy = options_.attention == AttentionMode::kProxy;
  std::vector<unsigned char> workspace;  // the plan's workspace, 256-byte aligned inside
  std::size_t ws_bytes = 0;
  PrefillStats local;
  PrefillStats& st = stats ? *stats : local;
  st = PrefillStats{};
  st.tokens = T;

  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = model_->layers[static_cast<std::size_t>(l)];
    float* k = k_cache_[static_cast<std::size_t>(l)].data();  // [T, Hkv, d] (first T rows)
    float* v = v_cache_[static_cast<std::size_t>(l)].data();  // [T, Hkv, d]
    rmsnorm(x.data(), w.attn_norm.data(), T, D, c.rms_norm_eps, h.data());
    gemm_nt(h.data(), w.wq.data(), q.data(), T, qo, D, 0.0f);
    gemm_nt(h.data(), w.wk.data(), k, T, kv, D, 0.0f);
    gemm_nt(h.data(), w.wv.data(), v, T, kv, D, 0.0f);
    add_bias(q.data(), w.bq, T);
    add_bias(k, w.bk, T);
    add_bias(v, w.bv, T);
    apply_rope(q.data(), T, Hq, d, 0, rope_cos_, rope_sin_);
    apply_rope(k, T, Hkv, d, 0, rope_cos_, rope_sin_);

    const TensorView q_view = TensorView::contiguous(q.data(), DType::kFloat32, {T, Hq, d});
    const TensorView k_view = TensorView::contiguous(k, DType::kFloat32, {T, Hkv, d});
    const TensorView v_view = TensorView::contiguous(v, DType::kFloat32, {T, Hkv, d});
    const TensorView o_view = TensorView::contiguous(attn.data(), DType::kFloat32, {T, Hq, d});
    const double t_attn = now_ms();
    if (proxy) {
      if (workspace.empty()) {
        ws_bytes = workspace_size(problem_shape(q_view, k_view, {}), options_.config);
        workspace.resize(ws_bytes + kWorkspaceAlign);
      }
      const std::uintptr_t base = reinterpret_cast<std::uintptr_t>(workspace.data());
      void* aligned =
          workspace.data() + (kWorkspaceAlign - base % kWorkspaceAlign) % kWorkspaceAlign;
      // prefill() = plan() then attend(); called apart to time the plan.
      const Plan p = plan(q_view, k_view, {}, options_.config,
                          Workspace{aligned, ws_bytes, Device::kCPU, 0}, runtime);
      st.plan_ms += now_ms() - t_attn;
      attend(q_view, k_view, v_view, p, o_view, nullptr, runtime);
      const double ms = now_ms() - t_attn;
      st.layer_attention_ms.push_back(ms);
      const Plan::Stats ps = p.stats();
      st.density.push_back(ps.density_weighted);
      st.head_density.push_back(ps.density);
      st.head_budget.push_back(ps.budgets);
      if (hooks.on_plan) hooks.on_plan(l, p);
    } else {
      dense(q_view, k_view, v_view, {}, o_view, nullptr, options_.config.scale, runtime);
      st.layer_attention_ms.push_back(now_ms() - t_attn);
      st.density.push_back(1.0);
      st.head_density.push_back(std::vector<float>(static_cast<std::size_t>(Hq), 1.0f));
      const std::int64_t nb = (T + options_.config.block_size - 1) / options_.config.block_size;
      st.head_budget.push_back(
          std::vector<std::int32_t>(static_cast<std::size_t>(Hq), static_cast<std::int32_t>(nb)));
    }
    st.attention_ms += st.layer_attention_ms.back();

    gemm_nt(attn.data(), w.wo.data(), x.data(), T, D, qo, 1.0f);  // x += a Wo^T
    rmsnorm(x.data(), w.mlp_norm.data(), T, D, c.rms_norm_eps, h.data());
    for (std::int64_t r0 = 0; r0 < T; r0 += chunk) {
      const std::int64_t rows = std::min(chunk, T - r0);
      gemm_nt(&h[static_cast<std::size_t>(r0 * D)], w.w_gate.data(), gate.data(), rows, F, D, 0.0f);
      gemm_nt(&h[static_cast<std::size_t>(r0 * D)], w.w_up.data(), up.data(), rows, F, D, 0.0f);
      for (std::int64_t i = 0; i < rows * F; ++i) {
        gate[static_cast<std::size_t>(i)] =
            silu(gate[static_cast<std::size_t>(i)]) * up[static_cast<std::size_t>(i)];
      }
      gemm_nt(gate.data(), w.w_down.data(), &x[static_cast<std::size_t>(r0 * D)], rows, D, F, 1.0f);
    }
    if (hooks.on_layer) hooks.on_layer(l, x.data(), T);
  }
  std::vector<float> last(static_cast<std::size_t>(D));
  rmsnorm(&x[static_cast<std::size_t>((T - 1) * D)], model_->final_norm.data(), 1, D,
          c.rms_norm_eps, last.data());
  std::vector<float> logits(static_cast<std::size_t>(c.vocab_size));
  gemv(model_->output_weights().data(), last.data(), logits.data(), c.vocab_size, D, 0.0f);
  position_ = T;
  st.prefill_ms = now_ms() - t_start;
  return logits;
}

std::vector<float> Session::decode(std::int32_t token) {
  const ModelConfig& c = model_->config;
  RUNNER_CHECK(position_ >= 1, "decode: prefill first");
  RUNNER_CHECK(position_ < max_tokens_, "decode: the session is full (", max_tokens_, " tokens)");
  RUNNER_CHECK(token >= 0 && token < c.vocab_size, "decode: token ", token,
               ", expected an id in [0, ", c.vocab_size, ")");
  const std::int64_t D = c.hidden_size, F = c.intermediate_size, d = c.head_dim;
  const std::int64_t Hq = c.num_qo_heads, Hkv = c.num_kv_heads, qo = Hq * d, kv = Hkv * d;
  const std::int64_t group = Hq / Hkv, pos = position_, n = pos + 1;
  const float scale = options_.config.scale_for(d);
  std::vector<float> x(model_->embed.begin() + token * D, model_->embed.begin() + (token + 1) * D);
  std::vector<float> h(static_cast<std::size_t>(D)), q(static_cast<std::size_t>(qo)),
      attn(static_cast<std::size_t>(qo)), gate(static_cast<std::size_t>(F)),
      up(static_cast<std::size_t>(F)), scores(static_cast<std::size_t>(n));
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    const LayerWeights& w = model_->layers[static_cast<std::size_t>(l)];
    float* k = k_cache_[static_cast<std::size_t>(l)].data();  // [max_tokens, Hkv, d]
    float* v = v_cache_[static_cast<std::size_t>(l)].data();  // [max_tokens, Hkv, d]
    rmsnorm(x.data(), w.attn_norm.data(), 1, D, c.rms_norm_eps, h.data());
    gemv(w.wq.data(), h.data(), q.data(), qo, D, 0.0f);
    gemv(w.wk.data(), h.data(), k + pos * kv, kv, D, 0.0f);
    gemv(w.wv.data(), h.data(), v + pos * kv, kv, D, 0.0f);
    add_bias(q.data(), w.bq, 1);
    add_bias(k + pos * kv, w.bk, 1);
    add_bias(v + pos * kv, w.bv, 1);
    apply_rope(q.data(), 1, Hq, d, pos, rope_cos_, rope_sin_);
    apply_rope(k + pos * kv, 1, Hkv, d, pos, rope_cos_, rope_sin_);
    // Dense attention of one query over the n cached keys: softmax(scale q K^T) V.
    for (std::int64_t hq = 0; hq < Hq; ++hq) {
      const std::int64_t g = hq / group;
      const float* qh = &q[static_cast<std::size_t>(hq * d)];  // [d]
      float mx = -std::numeric_limits<float>::infinity();
      for (std::int64_t u = 0; u < n; ++u) {
        const float* ku = k + (u * Hkv + g) * d;  // [d]
        float s = 0.0f;
        for (std::int64_t i = 0; i < d; ++i) s += qh[i] * ku[i];
        scores[static_cast<std::size_t>(u)] = s * scale;
        mx = std::max(mx, s * scale);
      }
      float sum = 0.0f;
      for (std::int64_t u = 0; u < n; ++u) {
        scores[static_cast<std::size_t>(u)] = std::exp(scores[static_cast<std::size_t>(u)] - mx);
        sum += scores[static_cast<std::size_t>(u)];
      }
      float* oh = &attn[static_cast<std::size_t>(hq * d)];  // [d]
      std::fill(oh, oh + d, 0.0f);
      for (std::int64_t u = 0; u < n; ++u) {
        const float p = scores[static_cast<std::size_t>(u)] / sum;
        const float* vu = v + (u * Hkv + g) * d;  // [d]
        for (std::int64_t i = 0; i < d; ++i) oh[i] += p * vu[i];
      }
    }
    gemv(w.wo.data(), attn.data(), x.data(), D, qo, 1.0f);
    rmsnorm(x.data(), w.mlp_norm.data(), 1, D, c.rms_norm_eps, h.data());
    gemv(w.w_gate.data(), h.data(), gate.data(), F, D, 0.0f);
    gemv(w.w_up.data(), h.data(), up.data(), F, D, 0.0f);
    for (std::int64_t i = 0; i < F; ++i) {
      gate[static_cast<std::size_t>(i)] =
          silu(gate[static_cast<std::size_t>(i)]) * up[static_cast<std::size_t>(i)];
    }
    gemv(w.w_down.data(), gate.data(), x.data(), D, F, 1.0f);
  }
  rmsnorm(x.data(), model_->final_norm.data(), 1, D, c.rms_norm_eps, h.data());
  std::vector<float> logits(static_cast<std::size_t>(c.vocab_size));
  gemv(model_->output_weights().data(), h.data(), logits.data(), c.vocab_size, D, 0.0f);
  position_ = n;
  return logits;
}

Generation generate(const Model& model, const std::vector<std::int32_t>& prompt,
                    std::int64_t max_new_tokens, const RunOptions& options,
                    const PrefillHooks& hooks) {
  RUNNER_CHECK(max_new_tokens >= 0 && max_new_tokens <= (std::int64_t{1} << 20),
               "max_new_tokens = ", max_new_tokens, ", expected 0 .. 2^20");
  const std::int64_t capacity =
      checked_add(static_cast<std::int64_t>(prompt.size()),
                  std::max<std::int64_t>(max_new_tokens, 1), "prompt + new tokens");
  Session session(model, options, capacity);
  Generation g;
  std::vector<float> logits = session.prefill(prompt, &g.prefill, hooks);
  const std::vector<std::int64_t>& eos = model.config.eos_token_ids;
  const double t0 = now_ms();
  while (static_cast<std::int64_t>(g.tokens.size()) < max_new_tokens) {
    const std::int64_t next = argmax(logits);
    if (std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    g.tokens.push_back(static_cast<std::int32_t>(next));
    if (static_cast<std::int64_t>(g.tokens.size()) == max_new_tokens) break;
    logits = session.decode(static_cast<std::int32_t>(next));
    ++g.decode_steps;
  }
  g.decode_ms = now_ms() - t0;
  return g;
}

}  // namespace proxyattn::runner
