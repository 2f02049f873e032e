// tests/runner_test.cc: the model runner against a plain reference forward, the shipped model's
// answers dense and ProxyAttn, and the checkpoint loader on bad inputs.
#include "proxyattn/runner/runner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "proxyattn/runner/model.h"
#include "proxyattn/runner/tokenizer.h"
#include "proxyattn/safetensors.h"
#include "proxyattn/types.h"

namespace proxyattn::runner {
namespace {

namespace fs = std::filesystem;

// --- a tiny random model
// ---------------------------------------------------------------------------

ModelConfig tiny_config(bool bias, bool tied, const std::string& rope) {
  std::string json = R"({"model_type": ")" + std::string(bias ? "qwen2" : "llama") + R"(",
    "vocab_size": 61, "hidden_size": 32, "intermediate_size": 40, "num_hidden_layers": 2,
    "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 8,
    "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 500.0,
    "tie_word_embeddings": )" +
                     std::string(tied ? "true" : "false") +
                     R"(, "bos_token_id": 1, "eos_token_id": [2, 3])";
  if (rope == "llama3") {
    json += R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 16})";
  }
  json += "}";
  return parse_model_config(json, "tiny config.json");
}

std::vector<float> random_vector(std::size_t n, std::mt19937& rng, float scale, float offset = 0) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = offset + dist(rng);
  return v;
}

Model tiny_model(const ModelConfig& c, unsigned seed) {
  std::mt19937 rng(seed);
  const auto D = static_cast<std::size_t>(c.hidden_size),
             F = static_cast<std::size_t>(c.intermediate_size);
  const auto qo = static_cast<std::size_t>(c.num_qo_heads * c.head_dim);
  const auto kv = static_cast<std::size_t>(c.num_kv_heads * c.head_dim);
  const auto V = static_cast<std::size_t>(c.vocab_size);
  Model m;
  m.config = c;
  m.embed = random_vector(V * D, rng, 1.0f);
  m.final_norm = random_vector(D, rng, 0.1f, 1.0f);
  if (!c.tie_word_embeddings) m.lm_head = random_vector(V * D, rng, 0.2f);
  for (std::int64_t l = 0; l < c.num_layers; ++l) {
    LayerWeights w;
    w.attn_norm = random_vector(D, rng, 0.1f, 1.0f);
    w.mlp_norm = random_vector(D, rng, 0.1f, 1.0f);
    w.wq = random_vector(qo * D, rng, 0.3f);
    w.wk = random_vector(kv * D, rng, 0.3f);
    w.wv = random_vector(kv * D, rng, 0.3f);
    w.wo = random_vector(D * qo, rng, 0.2f);
    if (c.attention_bias) {
      w.bq = random_vector(qo, rng, 0.2f);
      w.bk = random_vector(kv, rng, 0.2f);
      w.bv = random_vector(kv, rng, 0.2f);
    }
    w.w_gate = random_vector(F * D, rng, 0.2f);
    w.w_up = random_vector(F * D, rng, 0.2f);
    w.w_down = random_vector(D * F, rng, 0.2f);
    m.layers.push_back(std::move(w));
  }
  return m;
}

// --- the plain reference forward
// ------------------------------------------------------------------ Naive loops in scalar type T
// over the whole prompt: per-layer outputs [T, D] and the last logits. The RoPE angles are the
// runner's tables (the fp32 angles of the reference implementation).
template <typename T>
struct RefOutput {
  std::vector<std::vector<T>> layers;
  std::vector<T> logits;
};

template <typename T>
std::vector<T> ref_rmsnorm(const std::vector<T>& x, const std::vector<float>& w, std::int64_t rows,
                           std::int64_t D, double eps) {
  std::vector<T> y(x.size());
  for (std::int64_t r = 0; r < rows; ++r) {
    T ss = 0;
    for (std::int64_t i = 0; i < D; ++i) ss += x[r * D + i] * x[r * D + i];
    const T inv = T(1) / std::sqrt(ss / T(D) + T(eps));
    for (std::int64_t i = 0; i < D; ++i) y[r * D + i] = T(w[i]) * (x[r * D + i] * inv);
  }
  return y;
}

// y[rows, N] = x[rows, K] W[N, K]^T (+ bias)
template <typename T>
std::vector<T> ref_linear(const std::vector<T>& x, const std::vector<float>& W,
                          const std::vector<float>& bias, std::int64_t rows, std::int64_t N,
                          std::int64_t K) {
  std::vector<T> y(static_cast<std::size_t>(rows * N));
  for (std::int64_t r = 0; r < rows; ++r) {
    for (std::int64_t n = 0; n < N; ++n) {
      T s = bias.empty() ? T(0) : T(bias[n]);
      for (std::int64_t k = 0; k < K; ++k) s += x[r * K + k] * T(W[n * K + k]);
      y[r * N + n] = s;
    }
  }
  return y;
}

template <typename T>
RefOutput<T> reference_forward(const Model& m, const std::vector<std::int32_t>& tokens) {
  const ModelConfig& c = m.config;
  const std::int64_t n = static_cast<std::int64_t>(tokens.size()), D = c.hidden_size,
                     F = c.intermediate_size, d = c.head_dim, Hq = c.num_qo_heads,
                     Hkv = c.num_kv_heads, half = d / 2;
  std::vector<float> cos_t, sin_t;
  rope_tables(c, n, cos_t, sin_t);
  std::vector<T> x(static_cast<std::size_t>(n * D));
  for (std::int64_t t = 0; t < n; ++t) {
    for (std::int64_t i = 0; i < D; ++i) x[t * D + i] = T(m.embed[tokens[t] * D + i]);
  }
  RefOutput<T> out;
  for (const LayerWeights& w : m.layers) {
    std::vector<T> h = ref_rmsnorm(x, w.attn_norm, n, D, c.rms_norm_eps);
    std::vector<T> q = ref_linear(h, w.wq, w.bq, n, Hq * d, D);
    std::vector<T> k = ref_linear(h, w.wk, w.bk, n, Hkv * d, D);
    std::vector<T> v = ref_linear(h, w.wv, w.bv, n, Hkv * d, D);
    auto rope = [&](std::vector<T>& a, std::int64_t heads) {
      for (std::int64_t t = 0; t < n; ++t) {
        for (std::int64_t hh = 0; hh < heads; ++hh) {
          T* p = &a[(t * heads + hh) * d];
          for (std::int64_t i = 0; i < half; ++i) {
            const T cs = T(cos_t[t * half + i]), sn = T(sin_t[t * half + i]);
            const T a0 = p[i], a1 = p[i + half];
            p[i] = a0 * cs - a1 * sn;
            p[i + half] = a1 * cs + a0 * sn;
          }
        }
      }
    };
    rope(q, Hq);
    rope(k, Hkv);
    std::vector<T> a(static_cast<std::size_t>(n * Hq * d), T(0));
    const T scale = T(1) / std::sqrt(T(d));
    for (std::int64_t hq = 0; hq < Hq; ++hq) {
      const std::int64_t g = hq / (Hq / Hkv);
      for (std::int64_t t = 0; t < n; ++t) {
        std::vector<T> s(static_cast<std::size_t>(t + 1));
        T mx = -INFINITY, sum = 0;
        for (std::int64_t u = 0; u <= t; ++u) {
          T dot = 0;
          for (std::int64_t i = 0; i < d; ++i)
            dot += q[(t * Hq + hq) * d + i] * k[(u * Hkv + g) * d + i];
          s[u] = dot * scale;
          mx = std::max(mx, s[u]);
        }
        for (std::int64_t u = 0; u <= t; ++u) sum += (s[u] = std::exp(s[u] - mx));
        for (std::int64_t u = 0; u <= t; ++u) {
          for (std::int64_t i = 0; i < d; ++i)
            a[(t * Hq + hq) * d + i] += s[u] / sum * v[(u * Hkv + g) * d + i];
        }
      }
    }
    std::vector<T> o = ref_linear(a, w.wo, {}, n, D, Hq * d);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += o[i];
    h = ref_rmsnorm(x, w.mlp_norm, n, D, c.rms_norm_eps);
    std::vector<T> gt = ref_linear(h, w.w_gate, {}, n, F, D);
    std::vector<T> up = ref_linear(h, w.w_up, {}, n, F, D);
    for (std::size_t i = 0; i < gt.size(); ++i) gt[i] = gt[i] / (T(1) + std::exp(-gt[i])) * up[i];
    std::vector<T> dn = ref_linear(gt, w.w_down, {}, n, D, F);
    for (std::size_t i = 0; i < x.size(); ++i) x[i] += dn[i];
    out.layers.push_back(x);
  }
  std::vector<T> last(x.end() - D, x.end());
  last = ref_rmsnorm(last, m.final_norm, 1, D, c.rms_norm_eps);
  out.logits = ref_linear(last, m.output_weights(), {}, 1, c.vocab_size, D);
  return out;
}

template <typename A, typename B>
double max_abs_diff(const std::vector<A>& a, const std::vector<B>& b) {
  EXPECT_EQ(a.size(), b.size());
  double e = 0;
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    const double di = std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i]));
    if (!(di <= e)) e = di;  // NaN propagates
  }
  return e;
}

std::vector<std::int32_t> random_tokens(std::int64_t n, std::int64_t vocab, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& x : t) x = static_cast<std::int32_t>(rng() % static_cast<unsigned>(vocab));
  return t;
}

// err(runner vs double reference) <= 2 x err(naive fp32 vs double reference) + noise.
void expect_matches_reference(const Model& m, std::int64_t n) {
  const std::vector<std::int32_t> tokens = random_tokens(n, m.config.vocab_size, 7);
  const RefOutput<double> ref = reference_forward<double>(m, tokens);
  const RefOutput<float> naive = reference_forward<float>(m, tokens);
  RunOptions options;
  options.chunk_tokens = 7;  // several MLP chunks
  Session session(m, options, n + 1);
  std::vector<std::vector<float>> layers;
  PrefillHooks hooks;
  hooks.on_layer = [&](std::int64_t, const float* hidden, std::int64_t rows) {
    layers.emplace_back(hidden, hidden + rows * m.config.hidden_size);
  };
  const std::vector<float> logits = session.prefill(tokens, nullptr, hooks);
  ASSERT_EQ(layers.size(), ref.layers.size());
  for (std::size_t l = 0; l < layers.size(); ++l) {
    const double err = max_abs_diff(layers[l], ref.layers[l]);
    const double bound = 2 * max_abs_diff(naive.layers[l], ref.layers[l]) + 1e-5;
    EXPECT_LE(err, bound) << "layer " << l;
  }
  const double err = max_abs_diff(logits, ref.logits);
  EXPECT_LE(err, 2 * max_abs_diff(naive.logits, ref.logits) + 1e-5) << "logits";

  // Decoding the last token over the cache of the others gives the same logits.
  if (n < 2) return;
  Session split(m, options, n + 1);
  split.prefill(std::vector<std::int32_t>(tokens.begin(), tokens.end() - 1));
  const std::vector<float> decoded = split.decode(tokens.back());
  EXPECT_LE(max_abs_diff(decoded, ref.logits), 2 * max_abs_diff(naive.logits, ref.logits) + 1e-5)
      << "decode";
}

TEST(RunnerReference, LlamaTiedEmbeddings) {
  expect_matches_reference(tiny_model(tiny_config(false, true, "default"), 1), 37);
}

TEST(RunnerReference, QkvBiasUntiedLlama3Rope) {
  expect_matches_reference(tiny_model(tiny_config(true, false, "llama3"), 2), 29);
}

TEST(RunnerReference, SingleToken) {
  expect_matches_reference(tiny_model(tiny_config(false, false, "default"), 3), 1);
}

TEST(RunnerReference, GenerateStopsAtEosAndLimit) {
  const Model m = tiny_model(tiny_config(false, true, "default"), 4);
  const Generation g = generate(m, random_tokens(9, m.config.vocab_size, 3), 5, RunOptions{});
  EXPECT_LE(g.tokens.size(), 5u);
  for (std::int32_t t : g.tokens) EXPECT_TRUE(t != 2 && t != 3);
  EXPECT_EQ(g.prefill.density.size(), 2u);
}

TEST(RunnerReference, ProxyAttentionRunsAndReportsDensity) {
  const Model m = tiny_model(tiny_config(false, true, "default"), 5);
  RunOptions options;
  options.attention = AttentionMode::kProxy;
  options.config.block_size = 64;
  options.config.min_budget_tokens = 64;
  options.config.gamma = 0.5;
  std::int64_t plans = 0;
  PrefillHooks hooks;
  hooks.on_plan = [&](std::int64_t, const Plan&) { ++plans; };
  Session s(m, options, 400);
  PrefillStats stats;
  const std::vector<float> logits =
      s.prefill(random_tokens(400, m.config.vocab_size, 11), &stats, hooks);
  EXPECT_EQ(plans, 2);
  ASSERT_EQ(stats.density.size(), 2u);
  for (double d : stats.density) EXPECT_TRUE(d > 0.0 && d <= 1.0) << d;
  for (float v : logits) EXPECT_TRUE(std::isfinite(v));
}

// --- the shipped model
// ------------------------------------------------------------------------------

const std::string kModelDir = std::string(PROXYATTN_SOURCE_DIR) + "/models/pa-tiny-8k";

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

TEST(RunnerShippedModel, ShortPromptSameAnswerDenseAndProxy) {
  const Model m = load_model(kModelDir);
  const Tokenizer tok = Tokenizer::load(kModelDir);
  const std::string prompt = read_text(kModelDir + "/demo/short_prompt.txt");
  const std::string answer = read_text(kModelDir + "/demo/short_answer.txt");
  ASSERT_FALSE(prompt.empty());
  std::vector<std::int32_t> ids{tok.bos_id()};
  for (std::int32_t id : tok.encode(prompt)) ids.push_back(id);
  RunOptions dense;
  RunOptions proxy;
  proxy.attention = AttentionMode::kProxy;
  proxy.config.block_size = 64;
  proxy.config.min_budget_tokens = 128;
  proxy.config.gamma = 0.9;
  const Generation gd = generate(m, ids, 12, dense);
  const Generation gp = generate(m, ids, 12, proxy);
  const std::string text_dense = tok.decode(gd.tokens), text_proxy = tok.decode(gp.tokens);
  EXPECT_EQ(text_dense, text_proxy);
  EXPECT_NE(text_dense.find(answer.substr(0, answer.find_first_of("\r\n"))), std::string::npos)
      << text_dense;
  EXPECT_LT(gp.prefill.mean_density(), 1.0);
}

// --- bad checkpoints
// --------------------------------------------------------------------------------

class BadCheckpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("proxyattn_runner_test_" +
            std::to_string(::testing::UnitTest::GetInstance()->random_seed()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static constexpr const char* kConfig = R"({"model_type": "llama", "vocab_size": 8,
    "hidden_size": 4, "intermediate_size": 6, "num_hidden_layers": 1, "num_attention_heads": 2,
    "num_key_value_heads": 1, "rms_norm_eps": 1e-5, "tie_word_embeddings": true})";

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name, std::ios::binary) << text;
  }

  static safetensors::Tensor tensor(const std::string& name, std::vector<std::int64_t> shape,
                                    const std::string& dtype = "F32", float value = 0.5f) {
    safetensors::Tensor t;
    t.name = name;
    t.dtype = dtype;
    t.shape = std::move(shape);
    std::int64_t n = 1;
    for (auto s : t.shape) n *= s;
    t.data.resize(static_cast<std::size_t>(n) * safetensors::element_size(dtype));
    if (dtype == "F32") {
      for (std::int64_t i = 0; i < n; ++i) std::memcpy(&t.data[4 * i], &value, 4);
    }
    return t;
  }

  // The complete weights of kConfig.
  static std::vector<safetensors::Tensor> good_tensors() {
    const std::string p = "model.layers.0.";
    return {tensor("model.embed_tokens.weight", {8, 4}),
            tensor("model.norm.weight", {4}),
            tensor(p + "input_layernorm.weight", {4}),
            tensor(p + "post_attention_layernorm.weight", {4}),
            tensor(p + "self_attn.q_proj.weight", {4, 4}),
            tensor(p + "self_attn.k_proj.weight", {2, 4}),
            tensor(p + "self_attn.v_proj.weight", {2, 4}),
            tensor(p + "self_attn.o_proj.weight", {4, 4}),
            tensor(p + "mlp.gate_proj.weight", {6, 4}),
            tensor(p + "mlp.up_proj.weight", {6, 4}),
            tensor(p + "mlp.down_proj.weight", {4, 6})};
  }

  void write_weights(const std::vector<safetensors::Tensor>& tensors,
                     const std::string& name = "model.safetensors") {
    safetensors::File f;
    f.tensors = tensors;
    safetensors::write((dir_ / name).string(), f);
  }

  // load_model(dir) throws an Error whose message holds every one of the pieces.
  void expect_error(std::initializer_list<const char*> pieces) {
    try {
      load_model(dir_.string());
      ADD_FAILURE() << "load_model accepted a bad checkpoint";
    } catch (const Error& e) {
      const std::string msg = e.what();
      for (const char* p : pieces) EXPECT_NE(msg.find(p), std::string::npos) << msg;
    }
  }

  fs::path dir_;
};

TEST_F(BadCheckpoint, GoodOneLoads) {
  write("config.json", kConfig);
  write_weights(good_tensors());
  const Model m = load_model(dir_.string());
  EXPECT_EQ(m.config.head_dim, 2);
  EXPECT_EQ(m.layers.size(), 1u);
  EXPECT_FLOAT_EQ(m.layers[0].w_down[23], 0.5f);
}

TEST_F(BadCheckpoint, SixteenBitWeightsLoad) {
  write("config.json", kConfig);
  auto t = good_tensors();
  // 0.5 as bf16 (0x3f00) in one tensor and as fp16 (0x3800) in another; -2 in the last element.
  const std::pair<std::size_t, const char*> cases[] = {{10, "BF16"}, {9, "F16"}};
  for (const auto& [i, dtype] : cases) {
    safetensors::Tensor x = tensor(t[i].name, t[i].shape, dtype);
    const std::uint16_t half = std::string(dtype) == "BF16" ? 0x3f00 : 0x3800;
    const std::uint16_t minus_two = 0xc000;  // -2 in both formats
    for (std::size_t k = 0; k + 2 <= x.data.size(); k += 2) std::memcpy(&x.data[k], &half, 2);
    std::memcpy(&x.data[x.data.size() - 2], &minus_two, 2);
    t[i] = x;
  }
  write_weights(t);
  const Model m = load_model(dir_.string());
  EXPECT_FLOAT_EQ(m.layers[0].w_down[0], 0.5f);
  EXPECT_FLOAT_EQ(m.layers[0].w_down[23], -2.0f);
  EXPECT_FLOAT_EQ(m.layers[0].w_up[0], 0.5f);
  EXPECT_FLOAT_EQ(m.layers[0].w_up[23], -2.0f);
}

TEST(ModelConfigParse, Llama31RopeScaling) {
  // Llama 3.1's rope_scaling: high frequencies kept, low ones divided by factor, a smooth ramp
  // between (wavelengths between original_max / high_freq_factor and original_max /
  // low_freq_factor).
  const ModelConfig c = parse_model_config(
      R"({"model_type": "llama", "vocab_size": 8, "hidden_size": 4096, "intermediate_size": 8,
          "num_hidden_layers": 1, "num_attention_heads": 32, "rope_theta": 500000.0,
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                           "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}})",
      "config.json");
  ASSERT_EQ(c.head_dim, 128);
  const std::vector<double> inv = c.rope_inv_freq();
  ASSERT_EQ(inv.size(), 64u);
  for (std::size_t i = 0; i < inv.size(); ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * static_cast<double>(i) / 128.0);
    const double wavelen = 2 * M_PI / base;
    if (wavelen < 8192.0 / 4.0) {
      EXPECT_NEAR(inv[i] / base, 1.0, 1e-5) << i;
    } else if (wavelen > 8192.0) {
      EXPECT_NEAR(inv[i] / base, 1.0 / 8.0, 1e-5) << i;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
      EXPECT_NEAR(inv[i] / base, (1 - smooth) / 8.0 + smooth, 1e-5) << i;
    }
  }
}

TEST_F(BadCheckpoint, MissingFiles) {
  expect_error({"no config.json"});
  write("config.json", kConfig);
  expect_error({"no model.safetensors"});
}

TEST_F(BadCheckpoint, MissingTensor) {
  write("config.json", kConfig);
  auto t = good_tensors();
  t.erase(t.begin() + 9);
  write_weights(t);
  expect_error({"model.layers.0.mlp.up_proj.weight", "[6, 4]"});
}

TEST_F(BadCheckpoint, WrongShape) {
  write("config.json", kConfig);
  auto t = good_tensors();
  t[5] = tensor("model.layers.0.self_attn.k_proj.weight", {4, 4});
  write_weights(t);
  expect_error({"k_proj", "[4, 4]", "expected [2, 4]"});
}

TEST_F(BadCheckpoint, WrongDtype) {
  write("config.json", kConfig);
  auto t = good_tensors();
  t[1] = tensor("model.norm.weight", {4}, "I32");
  write_weights(t);
  expect_error({"model.norm.weight", "I32"});
}

TEST_F(BadCheckpoint, NonFiniteWeight) {
  write("config.json", kConfig);
  auto t = good_tensors();
  t[1] = tensor("model.norm.weight", {4}, "F32", NAN);
  write_weights(t);
  expect_error({"model.norm.weight", "finite"});
}

TEST_F(BadCheckpoint, TruncatedFile) {
  write("config.json", kConfig);
  write_weights(good_tensors());
  const auto size = fs::file_size(dir_ / "model.safetensors");
  for (auto cut : {size - 1, size / 2, std::uintmax_t{12}, std::uintmax_t{3}, std::uintmax_t{0}}) {
    fs::resize_file(dir_ / "model.safetensors", cut);
    expect_error({"model.safetensors"});
  }
}

TEST_F(BadCheckpoint, Shards) {
  write("config.json", kConfig);
  auto t = good_tensors();
  std::vector<safetensors::Tensor> a(t.begin(), t.begin() + 5), b(t.begin() + 5, t.end());
  write_weights(a, "part-1.safetensors");
  write_weights(b, "part-2.safetensors");
  std::string map = R"({"metadata": {}, "weight_map": {)";
  for (std::size_t i = 0; i < t.size(); ++i) {
    map += (i ? ", \"" : "\"") + t[i].name + "\": \"part-" + (i < 5 ? "1" : "2") + ".safetensors\"";
  }
  write("model.safetensors.index.json", map + "}}");
  EXPECT_EQ(load_model(dir_.string()).layers.size(), 1u);
  // A tensor in two shards.
  a.push_back(t[6]);
  write_weights(a, "part-1.safetensors");
  expect_error({"more than one file", "v_proj"});
  // A shard outside the directory.
  write("model.safetensors.index.json", R"({"weight_map": {"x": "../x.safetensors"}})");
  expect_error({"expected a file name in the model directory"});
  write("model.safetensors.index.json", R"({"weight_map": []})");
  expect_error({"weight_map"});
}

TEST(ModelConfigParse, RejectsBadFields) {
  const std::string base = R"("model_type": "llama", "vocab_size": 8, "hidden_size": 4,
    "intermediate_size": 6, "num_hidden_layers": 1, "num_attention_heads": 2)";
  struct Case {
    std::string extra;
    const char* expect;
  };
  const std::vector<Case> cases = {
      {R"(, "num_key_value_heads": 3)", "num_key_value_heads"},
      {R"(, "num_key_value_heads": 0)", "num_key_value_heads"},
      {R"(, "head_dim": 3)", "head_dim"},
      {R"(, "head_dim": "8")", "head_dim"},
      {R"(, "rms_norm_eps": -1)", "rms_norm_eps"},
      {R"(, "rms_norm_eps": 1e400)", "not valid JSON"},
      {R"(, "rope_theta": 0)", "rope_theta"},
      {R"(, "hidden_act": "gelu")", "hidden_act"},
      {R"(, "rope_scaling": {"rope_type": "yarn", "factor": 4})", "yarn"},
      {R"(, "rope_scaling": {"rope_type": "linear"})", "factor"},
      {R"(, "rope_scaling": 7)", "rope_scaling"},
      {R"(, "eos_token_id": 8)", "eos_token_id"},
      {R"(, "eos_token_id": [1, -1])", "eos_token_id"},
      {R"(, "tie_word_embeddings": 1)", "tie_word_embeddings"},
      {R"(, "mlp_bias": true)", "mlp_bias"},
      {R"(, "sliding_window": 4096, "use_sliding_window": true)", "sliding"},
  };
  for (const Case& c : cases) {
    try {
      parse_model_config("{" + base + c.extra + "}", "config.json");
      ADD_FAILURE() << "accepted " << c.extra;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    }
  }
  const std::vector<std::pair<std::string, const char*>> whole = {
      {"", "not valid JSON"},
      {"[]", "expected a JSON object"},
      {R"({"model_type": "gpt2"})", "model_type"},
      {R"({"model_type": "llama"})", "vocab_size"},
      {R"({"model_type": "llama", "vocab_size": 9223372036854775807})", "vocab_size"},
      {R"({"model_type": "llama", "vocab_size": 18446744073709551615})", "vocab_size"},
      {"{" + base.substr(0, base.find("\"num_attention")) + R"("num_attention_heads": 3})",
       "hidden_size"},
      {"{\"model_type\": \"\\u001b[2J\\nforged\"}", "\\x1b[2J\\x0aforged"},
  };
  for (const auto& [text, expect] : whole) {
    try {
      parse_model_config(text, "config.json");
      ADD_FAILURE() << "accepted " << text;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(expect), std::string::npos) << e.what();
    }
  }
  // Sizes whose products overflow 64 bits are rejected before anything is allocated.
  try {
    parse_model_config(R"({"model_type": "llama", "vocab_size": 16777216, "hidden_size": 16777216,
      "intermediate_size": 16777216, "num_hidden_layers": 4096, "num_attention_heads": 4096,
      "head_dim": 1024})",
                       "config.json");
    ADD_FAILURE() << "accepted overflowing sizes";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("overflows"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, UnsupportedAndTokenIds) {
  const fs::path dir = fs::temp_directory_path() / "proxyattn_runner_tokenizer_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  std::ofstream(dir / "tokenizer.json") << "{}";
  try {
    Tokenizer::load(dir.string());
    ADD_FAILURE() << "tokenizer.json accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported tokenizer"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--prompt-ids"), std::string::npos) << e.what();
  }
  std::ofstream(dir / "tokenizer.model") << "not a model";
  EXPECT_THROW(Tokenizer::load(dir.string()), Error);
  const std::string ids = (dir / "ids.txt").string();
  std::ofstream(ids) << "1, 5 7\n3";
  EXPECT_EQ(read_token_ids(ids, 8), (std::vector<std::int32_t>{1, 5, 7, 3}));
  for (const char* bad : {"1 8", "1 -2", "1x", "", "99999999999", "1.5"}) {
    std::ofstream(ids, std::ios::trunc) << bad;
    EXPECT_THROW(read_token_ids(ids, 8), Error) << bad;
  }
  fs::remove_all(dir);
  const Tokenizer tok = Tokenizer::load(kModelDir);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.decode(tok.encode("The magic number is 1234567.")), "The magic number is 1234567.");
}

}  // namespace
}  // namespace proxyattn::runner
