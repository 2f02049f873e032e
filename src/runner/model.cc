// src/runner/model.cc: config.json parsing and safetensors weight loading for Llama-family models.
#include "proxyattn/runner/model.h"

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <unordered_map>

#include "proxyattn/safetensors.h"
#include "proxyattn/types.h"
#include "src/runner/util.h"

namespace proxyattn::runner {

namespace {

using nlohmann::json;

// The largest config.json and index file read (real ones are a few kB to a few MB).
constexpr std::uint64_t kMaxJsonFileBytes = 64ull << 20;

// A JSON value for a message: compact, escaped by the dump, truncated.
std::string show(const json& value) {
  return printable(value.dump(-1, ' ', true, json::error_handler_t::replace));
}

class ConfigReader {
 public:
  ConfigReader(const json& root, const std::string& source) : root_(root), source_(source) {}

  const json* find(const char* key) const {
    const auto it = root_.find(key);
    if (it == root_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  std::int64_t dim(const char* key, std::int64_t fallback = -1,
                   std::int64_t max = kMaxConfigDim) const {
    const json* v = find(key);
    if (v == nullptr) {
      RUNNER_CHECK(fallback >= 0, source_, ": field \"", key, "\" is missing");
      return fallback;
    }
    return integer(*v, key, 1, max);
  }

  std::int64_t integer(const json& v, const char* key, std::int64_t lo, std::int64_t hi) const {
    RUNNER_CHECK(v.is_number_integer() || v.is_number_unsigned(), source_, ": field \"", key,
                 "\" = ", show(v), ", expected an integer in [", lo, ", ", hi, "]");
    if (v.is_number_unsigned()) {
      const std::uint64_t u = v.get<std::uint64_t>();
      RUNNER_CHECK(u <= static_cast<std::uint64_t>(hi) && static_cast<std::int64_t>(u) >= lo,
                   source_, ": field \"", key, "\" = ", u, ", expected an integer in [", lo, ", ",
                   hi, "]");
      return static_cast<std::int64_t>(u);
    }
    const std::int64_t i = v.get<std::int64_t>();
    RUNNER_CHECK(i >= lo && i <= hi, source_, ": field \"", key, "\" = ", i,
                 ", expected an integer in [", lo, ", ", hi, "]");
    return i;
  }

  double positive(const json& v, const char* key, double max) const {
    RUNNER_CHECK(v.is_number(), source_, ": field \"", key, "\" = ", show(v),
                 ", expected a positive number");
    const double x = v.get<double>();
    RUNNER_CHECK(std::isfinite(x) && x > 0.0 && x <= max, source_, ": field \"", key,
                 "\" = ", show(v), ", expected a number in (0, ", max, "]");
    return x;
  }

  double positive(const char* key, double fallback, double max) const {
    const json* v = find(key);
    return v == nullptr ? fallback : positive(*v, key, max);
  }

  bool boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    RUNNER_CHECK(v->is_boolean(), source_, ": field \"", key, "\" = ", show(*v),
                 ", expected true or false");
    return v->get<bool>();
  }

  std::string string(const char* key) const {
    const json* v = find(key);
    if (v == nullptr) return "";
    RUNNER_CHECK(v->is_string(), source_, ": field \"", key, "\" = ", show(*v),
                 ", expected a string");
    return v->get<std::string>();
  }

 private:
  const json& root_;
  const std::string& source_;
};

RopeScaling parse_rope_scaling(const json& v, const std::string& source, const char* key) {
  RUNNER_CHECK(v.is_object(), source, ": field \"", key, "\" = ", show(v),
               ", expected an object or null");
  ConfigReader r(v, source);
  RopeScaling s;
  std::string type = r.string("rope_type");
  if (type.empty()) type = r.string("type");
  if (type.empty()) type = "default";
  RUNNER_CHECK(type == "default" || type == "linear" || type == "llama3", source, ": ", key,
               " type \"", printable(type),
               "\" is not supported, expected \"default\", \"linear\" or \"llama3\"");
  s.type = type;
  if (type == "default") return s;
  s.factor = r.positive("factor", -1.0, 1e6);
  RUNNER_CHECK(s.factor > 0.0, source, ": ", key, ".factor is missing");
  if (type == "llama3") {
    s.low_freq_factor = r.positive("low_freq_factor", 1.0, 1e6);
    s.high_freq_factor = r.positive("high_freq_factor", 4.0, 1e6);
    RUNNER_CHECK(s.high_freq_factor > s.low_freq_factor, source, ": ", key,
                 ".high_freq_factor = ", s.high_freq_factor,
                 ", expected more than low_freq_factor = ", s.low_freq_factor);
    s.original_max_position_embeddings = r.dim("original_max_position_embeddings");
  }
  return s;
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  RUNNER_CHECK(in.good(), printable(path), ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  RUNNER_CHECK(size >= 0 && static_cast<std::uint64_t>(size) <= kMaxJsonFileBytes, printable(path),
               ": size ", static_cast<long long>(size), " bytes, expected at most ",
               kMaxJsonFileBytes);
  in.seekg(0, std::ios::beg);
  std::string text(static_cast<std::size_t>(size), '\0');
  in.read(text.data(), size);
  RUNNER_CHECK(in.good() || in.eof(), printable(path), ": read failed");
  return text;
}

json parse_json(const std::string& text, const std::string& source) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    RUNNER_FAIL(source, ": not valid JSON (", printable(e.what()), ")");
  }
}

bool file_exists(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return in.good();
}

// fp32 copy of a tensor, checked against the expected shape, all values finite.
void convert(const safetensors::Tensor& t, const std::vector<std::int64_t>& shape,
             const std::string& what, const std::string& source, std::vector<float>& out) {
  RUNNER_CHECK(t.dtype == "BF16" || t.dtype == "F16" || t.dtype == "F32", source, ": tensor '",
               printable(t.name), "' has dtype ", printable(t.dtype),
               ", expected BF16, F16 or F32");
  RUNNER_CHECK(t.shape == shape, source, ": tensor '", printable(t.name), "' has shape ",
               shape_string(t.shape), ", expected ", shape_string(shape), " (", what, ")");
  const std::int64_t n = t.numel();
  const std::size_t esize = safetensors::element_size(t.dtype);
  RUNNER_CHECK(t.data.size() == static_cast<std::size_t>(n) * esize, source, ": tensor '",
               printable(t.name), "' holds ", t.data.size(), " bytes, expected ",
               static_cast<std::size_t>(n) * esize);
  out.resize(static_cast<std::size_t>(n));
  const std::uint8_t* p = t.data.data();
  for (std::int64_t i = 0; i < n; ++i) {
    float f;
    if (esize == 4) {
      std::memcpy(&f, p + 4 * i, 4);
    } else {
      std::uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      f = t.dtype == "BF16" ? bf16_to_float(h) : fp16_to_float(h);
    }
    RUNNER_CHECK(std::isfinite(f), source, ": tensor '", printable(t.name), "' element ", i, " is ",
                 f, ", expected a finite value");
    out[static_cast<std::size_t>(i)] = f;
  }
}

}  // namespace

std::vector<double> ModelConfig::rope_inv_freq() const {
  const std::int64_t half = head_dim / 2;
  std::vector<double> inv(static_cast<std::size_t>(half));
  for (std::int64_t i = 0; i < half; ++i) {
    // As the reference computes it in fp32: 1 / theta ** (2i / d).
    const float expo = static_cast<float>(2 * i) / static_cast<float>(head_dim);
    const float base = std::pow(static_cast<float>(rope_theta), expo);
    inv[static_cast<std::size_t>(i)] = static_cast<double>(1.0f / base);
  }
  const RopeScaling& s = rope_scaling;
  if (s.type == "linear") {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == "llama3") {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else {
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1.0 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name) {
  const std::string source = printable(source_name);
  const json root = parse_json(json_text, source);
  RUNNER_CHECK(root.is_object(), source, ": expected a JSON object, got ", show(root));
  ConfigReader r(root, source);
  ModelConfig c;
  c.model_type = r.string("model_type");
  RUNNER_CHECK(c.model_type == "llama" || c.model_type == "mistral" || c.model_type == "qwen2",
               source, ": model_type \"", printable(c.model_type),
               "\" is not supported, expected \"llama\", \"mistral\" or \"qwen2\"");
  std::string act = r.string("hidden_act");
  RUNNER_CHECK(act.empty() || act == "silu", source, ": hidden_act \"", printable(act),
               "\" is not supported, expected \"silu\"");
  RUNNER_CHECK(!r.boolean("mlp_bias", false), source, ": mlp_bias true is not supported");
  if (r.find("sliding_window") != nullptr) {
    RUNNER_CHECK(!r.boolean("use_sliding_window", c.model_type == "mistral"), source,
                 ": sliding-window attention is not supported (sliding_window = ",
                 show(*r.find("sliding_window")), ")");
  }
  c.vocab_size = r.dim("vocab_size");
  c.hidden_size = r.dim("hidden_size");
  c.intermediate_size = r.dim("intermediate_size");
  c.num_layers = r.dim("num_hidden_layers", -1, 4096);
  c.num_qo_heads = r.dim("num_attention_heads", -1, 4096);
  c.num_kv_heads = r.dim("num_key_value_heads", c.num_qo_heads, 4096);
  RUNNER_CHECK(c.num_qo_heads % c.num_kv_heads == 0, source,
               ": num_attention_heads = ", c.num_qo_heads,
               " is not a multiple of num_key_value_heads = ", c.num_kv_heads);
  if (r.find("head_dim") != nullptr) {
    c.head_dim = r.dim("head_dim", -1, 1024);
  } else {
    RUNNER_CHECK(c.hidden_size % c.num_qo_heads == 0, source, ": hidden_size = ", c.hidden_size,
                 " is not a multiple of num_attention_heads = ", c.num_qo_heads,
                 " and head_dim is not given");
    c.head_dim = c.hidden_size / c.num_qo_heads;
  }
  RUNNER_CHECK(c.head_dim % 2 == 0 && c.head_dim <= 1024, source, ": head_dim = ", c.head_dim,
               ", expected an even number <= 1024");
  c.max_position_embeddings = r.dim("max_position_embeddings", 4096, std::int64_t{1} << 31);
  c.rms_norm_eps = r.positive("rms_norm_eps", 1e-6, 1.0);
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", false);
  c.attention_bias = r.boolean("attention_bias", c.model_type == "qwen2");
  const json* params = r.find("rope_parameters");
  double theta = r.positive("rope_theta", -1.0, 1e12);
  if (theta < 0 && params != nullptr && params->is_object()) {
    ConfigReader pr(*params, source);
    theta = pr.positive("rope_theta", -1.0, 1e12);
  }
  c.rope_theta = theta > 0 ? theta : 10000.0;
  if (const json* s = r.find("rope_scaling")) {
    c.rope_scaling = parse_rope_scaling(*s, source, "rope_scaling");
  } else if (params != nullptr) {
    c.rope_scaling = parse_rope_scaling(*params, source, "rope_parameters");
  }
  if (const json* b = r.find("bos_token_id")) {
    c.bos_token_id = r.integer(*b, "bos_token_id", 0, c.vocab_size - 1);
  }
  if (const json* e = r.find("eos_token_id")) {
    if (e->is_array()) {
      RUNNER_CHECK(e->size() <= 64, source, ": eos_token_id lists ", e->size(),
                   " ids, expected at most 64");
      for (const json& id : *e) {
        c.eos_token_ids.push_back(r.integer(id, "eos_token_id", 0, c.vocab_size - 1));
      }
    } else {
      c.eos_token_ids.push_back(r.integer(*e, "eos_token_id", 0, c.vocab_size - 1));
    }
  }
  // Every weight's element count must fit in int64 (and in size_t bytes as fp32).
  const std::int64_t qo = checked_mul(c.num_qo_heads, c.head_dim, "num_attention_heads x head_dim");
  const std::int64_t kv = checked_mul(c.num_kv_heads, c.head_dim, "num_key_value_heads x head_dim");
  const std::int64_t per_layer = checked_add(
      checked_mul(checked_add(checked_mul(qo, 2, "2 x q width"), checked_mul(kv, 2, "2 x kv width"),
                              "attention width"),
                  c.hidden_size, "attention weights"),
      checked_mul(checked_mul(c.intermediate_size, c.hidden_size, "MLP weights"), 3, "MLP weights"),
      "layer weights");
  const std::int64_t all_layers = checked_mul(per_layer, c.num_layers, "all layer weights");
  const std::int64_t embed = checked_mul(c.vocab_size, c.hidden_size, "vocab_size x hidden_size");
  checked_mul(checked_add(all_layers, checked_mul(embed, 2, "embeddings"), "weights"), 4,
              "weight bytes");
  return c;
}

Model load_model_files(const ModelConfig& config, const std::vector<std::string>& files) {
  const ModelConfig& c = config;
  const std::int64_t D = c.hidden_size, F = c.intermediate_size, V = c.vocab_size;
  const std::int64_t qo = c.num_qo_heads * c.head_dim, kv = c.num_kv_heads * c.head_dim;
  Model model;
  model.config = c;
  model.layers.resize(static_cast<std::size_t>(c.num_layers));

  struct Want {
    std::vector<std::int64_t> shape;
    std::string what;
    std::vector<float>* dst;
    bool found = false;
  };
  std::map<std::string, Want> want;
  auto add = [&](const std::string& name, std::vector<std::int64_t> shape, std::string what,
                 std::vector<float>* dst) {
    want[name] = Want{std::move(shape), std::move(what), dst};
  };
  add("model.embed_tokens.weight", {V, D}, "vocab_size x hidden_size", &model.embed);
  add("model.norm.weight", {D}, "hidden_size", &model.final_norm);
  if (!c.tie_word_embeddings)
    add("lm_head.weight", {V, D}, "vocab_size x hidden_size", &model.lm_head);
  for (std::int64_t i = 0; i < c.num_layers; ++i) {
    LayerWeights& w = model.layers[static_cast<std::size_t>(i)];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {D}, "hidden_size", &w.attn_norm);
    add(p + "post_attention_layernorm.weight", {D}, "hidden_size", &w.mlp_norm);
    add(p + "self_attn.q_proj.weight", {qo, D}, "num_attention_heads * head_dim x hidden_size",
        &w.wq);
    add(p + "self_attn.k_proj.weight", {kv, D}, "num_key_value_heads * head_dim x hidden_size",
        &w.wk);
    add(p + "self_attn.v_proj.weight", {kv, D}, "num_key_value_heads * head_dim x hidden_size",
        &w.wv);
    add(p + "self_attn.o_proj.weight", {D, qo}, "hidden_size x num_attention_heads * head_dim",
        &w.wo);
    if (c.attention_bias) {
      add(p + "self_attn.q_proj.bias", {qo}, "num_attention_heads * head_dim", &w.bq);
      add(p + "self_attn.k_proj.bias", {kv}, "num_key_value_heads * head_dim", &w.bk);
      add(p + "self_attn.v_proj.bias", {kv}, "num_key_value_heads * head_dim", &w.bv);
    }
    add(p + "mlp.gate_proj.weight", {F, D}, "intermediate_size x hidden_size", &w.w_gate);
    add(p + "mlp.up_proj.weight", {F, D}, "intermediate_size x hidden_size", &w.w_up);
    add(p + "mlp.down_proj.weight", {D, F}, "hidden_size x intermediate_size", &w.w_down);
  }
  RUNNER_CHECK(!files.empty(), "no safetensors files to load");
  for (const std::string& path : files) {
    const safetensors::File file = safetensors::read(path);
    for (const safetensors::Tensor& t : file.tensors) {
      const auto it = want.find(t.name);
      if (it == want.end()) continue;
      RUNNER_CHECK(!it->second.found, printable(path), ": tensor '", printable(t.name),
                   "' appears in more than one file");
      convert(t, it->second.shape, it->second.what, printable(path), *it->second.dst);
      it->second.found = true;
    }
  }
  for (const auto& [name, w] : want) {
    RUNNER_CHECK(w.found, "the checkpoint has no tensor '", name, "' (expected shape ",
                 shape_string(w.shape), ", ", w.what, ")");
  }
  return model;
}

Model load_model(const std::string& dir) {
  const std::string config_path = dir + "/config.json";
  RUNNER_CHECK(file_exists(config_path), printable(dir), ": no config.json");
  const ModelConfig config = parse_model_config(read_small_file(config_path), config_path);
  std::vector<std::string> files;
  const std::string index_path = dir + "/model.safetensors.index.json";
  const std::string single_path = dir + "/model.safetensors";
  if (file_exists(index_path)) {
    const std::string source = printable(index_path);
    const json index = parse_json(read_small_file(index_path), source);
    RUNNER_CHECK(
        index.is_object() && index.contains("weight_map") && index["weight_map"].is_object(),
        source, ": expected an object with a \"weight_map\" object");
    std::set<std::string> names;
    for (const auto& [tensor, file] : index["weight_map"].items()) {
      RUNNER_CHECK(file.is_string(), source, ": weight_map[\"", printable(tensor),
                   "\"] = ", show(file), ", expected a file name");
      const std::string name = file.get<std::string>();
      RUNNER_CHECK(!name.empty() && name.find('/') == std::string::npos &&
                       name.find('\\') == std::string::npos && name != "." && name != "..",
                   source, ": weight_map[\"", printable(tensor), "\"] = \"", printable(name),
                   "\", expected a file name in the model directory");
      names.insert(name);
    }
    RUNNER_CHECK(!names.empty(), source, ": weight_map is empty");
    for (const std::string& name : names) files.push_back(dir + "/" + name);
  } else {
    RUNNER_CHECK(file_exists(single_path), printable(dir),
                 ": no model.safetensors or model.safetensors.index.json");
    files.push_back(single_path);
  }
  return load_model_files(config, files);
}

}  // namespace proxyattn::runner
