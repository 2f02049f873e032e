// proxyattn/runner/tokenizer.h: the sentencepiece tokenizer of a model directory.
//
// Only sentencepiece models (tokenizer.model) are read. A directory with only tokenizer.json (the
// byte-level BPE of Llama 3 or Qwen2) raises an "unsupported tokenizer" error; such models run on
// token ids given directly (read_token_ids).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace proxyattn::runner {

/// \brief A sentencepiece tokenizer.
class Tokenizer {
 public:
  /// \brief Loads dir/tokenizer.model; throws Error naming the directory when it is missing,
  /// unreadable, or when only an unsupported tokenizer.json is present.
  static Tokenizer load(const std::string& dir);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  /// \brief Token ids of text, without BOS or EOS.
  std::vector<std::int32_t> encode(const std::string& text) const;
  /// \brief Text of ids (special tokens dropped).
  std::string decode(const std::vector<std::int32_t>& ids) const;
  std::int32_t bos_id() const;
  std::int32_t eos_id() const;
  std::int64_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

/// \brief Reads token ids, whitespace- or comma-separated decimal integers in [0, vocab_size).
/// Throws Error naming the file and the first bad entry.
std::vector<std::int32_t> read_token_ids(const std::string& path, std::int64_t vocab_size);

}  // namespace proxyattn::runner
