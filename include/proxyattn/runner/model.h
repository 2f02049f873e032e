// proxyattn/runner/model.h: Llama-family checkpoints in the Hugging Face layout.
//
// A model directory holds config.json and either model.safetensors or shards listed by
// model.safetensors.index.json. Supported: model_type llama, mistral and qwen2 (decoder-only,
// pre-norm RMSNorm, RoPE with rope_theta and the default, linear or llama3 rope_scaling, SwiGLU
// MLP with hidden_act silu, grouped-query attention, tied or untied embeddings, optional q/k/v
// bias). Weights may be BF16, F16 or F32; they are converted to fp32 at load.
//
// Every malformed input raises proxyattn::Error naming the file and the field or tensor: a
// missing or mistyped config field, a size out of range, a missing tensor, a tensor of the wrong
// dtype or shape. Sizes are checked with overflow-checked arithmetic before anything is
// allocated, and weights are allocated only for tensors whose bytes exist in the files.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace proxyattn::runner {

/// \brief RoPE frequency scaling (config.json "rope_scaling" or "rope_parameters").
struct RopeScaling {
  std::string type = "default";   ///< "default", "linear" or "llama3"
  double factor = 1.0;            ///< linear, llama3: frequencies divided by factor
  double low_freq_factor = 1.0;   ///< llama3 only
  double high_freq_factor = 4.0;  ///< llama3 only
  std::int64_t original_max_position_embeddings = 8192;  ///< llama3 only
};

/// \brief The architecture of a checkpoint, validated.
struct ModelConfig {
  std::string model_type;  ///< "llama", "mistral" or "qwen2"
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;        ///< D
  std::int64_t intermediate_size = 0;  ///< F, the MLP width
  std::int64_t num_layers = 0;
  std::int64_t num_qo_heads = 0;
  std::int64_t num_kv_heads = 0;
  std::int64_t head_dim = 0;  ///< d; defaults to hidden_size / num_qo_heads
  std::int64_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool attention_bias = false;              ///< q/k/v projections carry a bias (qwen2: always)
  std::int64_t bos_token_id = -1;           ///< -1 when the config names none
  std::vector<std::int64_t> eos_token_ids;  ///< possibly empty

  /// \brief The RoPE inverse frequencies, [head_dim / 2], after rope_scaling.
  std::vector<double> rope_inv_freq() const;
};

/// \brief The largest size accepted for any one dimension of a config (vocabulary, widths).
constexpr std::int64_t kMaxConfigDim = std::int64_t{1} << 24;

/// \brief Parses and validates the text of a config.json.
/// \param source_name names the input in error messages
ModelConfig parse_model_config(const std::string& json_text, const std::string& source_name);

/// \brief One transformer layer's weights in fp32, row-major as in the checkpoint
/// (nn.Linear: [out_features, in_features]).
struct LayerWeights {
  std::vector<float> attn_norm;   // [D]
  std::vector<float> wq;          // [num_qo_heads * d, D]
  std::vector<float> wk;          // [num_kv_heads * d, D]
  std::vector<float> wv;          // [num_kv_heads * d, D]
  std::vector<float> bq, bk, bv;  // [num_qo_heads * d], [num_kv_heads * d] x 2; empty without bias
  std::vector<float> wo;          // [D, num_qo_heads * d]
  std::vector<float> mlp_norm;    // [D]
  std::vector<float> w_gate;      // [F, D]
  std::vector<float> w_up;        // [F, D]
  std::vector<float> w_down;      // [D, F]
};

/// \brief A loaded model: config and fp32 weights.
struct Model {
  ModelConfig config;
  std::vector<float> embed;          // [vocab_size, D]
  std::vector<LayerWeights> layers;  // [num_layers]
  std::vector<float> final_norm;     // [D]
  std::vector<float> lm_head;        // [vocab_size, D]; empty when tied to embed

  /// \brief The output projection: lm_head, or embed when the embeddings are tied.
  const std::vector<float>& output_weights() const { return lm_head.empty() ? embed : lm_head; }
};

/// \brief Loads config.json and the safetensors weights of a model directory.
Model load_model(const std::string& dir);

/// \brief Loads the weights of config from a list of safetensors files (one or several shards).
/// Every expected tensor must appear in exactly one file; other tensors are ignored.
Model load_model_files(const ModelConfig& config, const std::vector<std::string>& files);

}  // namespace proxyattn::runner
