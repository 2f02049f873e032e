// proxyattn/runner/runner.h: the forward pass of a loaded model on the CPU.
//
// Prefill runs the whole prompt through each layer at once: projections and the MLP as fp32 GEMMs
// (OpenBLAS, chunked over tokens), attention through the library's public entries, dense() or
// prefill() with a ProxyAttn Config, over all prompt tokens of the layer. Decoding is greedy, one
// token at a time over the KV cache with dense attention, as in the ProxyAttn paper (sparsity only
// in prefill).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "proxyattn/config.h"
#include "proxyattn/plan.h"
#include "proxyattn/runner/model.h"

namespace proxyattn::runner {

/// \brief Which attention prefill uses.
enum class AttentionMode : int { kDense = 0, kProxy = 1 };
const char* to_string(AttentionMode mode);
/// \brief Parses "dense" or "proxy"; throws Error on anything else.
AttentionMode parse_attention_mode(const std::string& name);

/// \brief How a forward pass runs.
struct RunOptions {
  AttentionMode attention = AttentionMode::kDense;
  Config config;                     ///< ProxyAttn config (used when attention is kProxy)
  int num_threads = 0;               ///< attention and GEMM threads; 0 = all hardware threads
  std::int64_t chunk_tokens = 1024;  ///< tokens per projection / MLP chunk, >= 1
};

/// \brief Observers of a prefill, for tests and tools. Either may be empty.
struct PrefillHooks {
  /// Called after each layer with its output hidden states, [tokens, D] row-major.
  std::function<void(std::int64_t layer, const float* hidden, std::int64_t tokens)> on_layer;
  /// Called after each layer's attention with its plan (a host plan; ProxyAttn mode only).
  std::function<void(std::int64_t layer, const Plan& plan)> on_plan;
};

/// \brief Time and sparsity of one prefill.
struct PrefillStats {
  std::int64_t tokens = 0;
  double prefill_ms = 0.0;    ///< the whole prefill, embedding to last-token logits
  double attention_ms = 0.0;  ///< the attention calls (plan + attend, or dense), all layers
  double plan_ms = 0.0;       ///< the plan() part of attention_ms (ProxyAttn only)
  std::vector<double> layer_attention_ms;  // [num_layers]
  /// Density per layer: selected causal blocks / causal blocks, weighted over heads (1 for dense).
  std::vector<double> density;                         // [num_layers]
  std::vector<std::vector<float>> head_density;        // [num_layers][num_qo_heads]
  std::vector<std::vector<std::int32_t>> head_budget;  // [num_layers][num_qo_heads] blocks
  /// \brief Mean of density over layers.
  double mean_density() const;
};

/// \brief One sequence's state: the model, the options and the KV cache.
class Session {
 public:
  /// \param max_tokens the capacity of the KV cache (prompt plus generated tokens), >= 1
  Session(const Model& model, const RunOptions& options, std::int64_t max_tokens);

  /// \brief Runs the prompt (the cache must be empty) and returns the last token's logits,
  /// [vocab_size]. Token ids must lie in [0, vocab_size).
  std::vector<float> prefill(const std::vector<std::int32_t>& tokens, PrefillStats* stats = nullptr,
                             const PrefillHooks& hooks = {});
  /// \brief Appends one token and returns its logits, [vocab_size].
  std::vector<float> decode(std::int32_t token);
  /// \brief Tokens in the cache.
  std::int64_t position() const { return position_; }

 private:
  const Model* model_;
  RunOptions options_;
  std::int64_t max_tokens_;
  std::int64_t position_ = 0;
  std::vector<std::vector<float>> k_cache_, v_cache_;  // [num_layers][max_tokens, num_kv_heads, d]
  std::vector<float> rope_cos_, rope_sin_;             // [max_tokens, d / 2]
};

/// \brief The result of generate().
struct Generation {
  std::vector<std::int32_t> tokens;  ///< generated ids, without the EOS that stopped it
  PrefillStats prefill;
  double decode_ms = 0.0;         ///< time of the decode steps
  std::int64_t decode_steps = 0;  ///< forward passes after prefill
  /// \brief Decoded tokens per second (0 when nothing was decoded).
  double decode_tokens_per_s() const;
};

/// \brief Greedy decoding: prefill the prompt, then take the argmax token until an EOS of the
/// config (not included) or max_new_tokens tokens.
Generation generate(const Model& model, const std::vector<std::int32_t>& prompt,
                    std::int64_t max_new_tokens, const RunOptions& options,
                    const PrefillHooks& hooks = {});

/// \brief RoPE tables for positions [0, tokens): cos and sin, [tokens, head_dim / 2] each, of the
/// angle float(position) * float(inv_freq), as the reference implementation computes it in fp32.
void rope_tables(const ModelConfig& config, std::int64_t tokens, std::vector<float>& cos_table,
                 std::vector<float>& sin_table);

}  // namespace proxyattn::runner
