// src/runner/tokenizer.cc: sentencepiece through Debian's libsentencepiece, and token-id files.
#include "proxyattn/runner/tokenizer.h"

#include <sentencepiece_processor.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "proxyattn/types.h"
#include "src/runner/util.h"

namespace proxyattn::runner {

namespace {

constexpr std::streamoff kMaxTokenFileBytes = 256ll << 20;
constexpr std::streamoff kMaxTokenizerBytes = 256ll << 20;

bool file_exists(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return in.good();
}

std::string read_file(const std::string& path, std::streamoff max_bytes) {
  std::ifstream in(path, std::ios::binary);
  RUNNER_CHECK(in.good(), printable(path), ": cannot open");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  RUNNER_CHECK(size >= 0 && size <= max_bytes, printable(path), ": size ",
               static_cast<long long>(size), " bytes, expected at most ",
               static_cast<long long>(max_bytes));
  in.seekg(0, std::ios::beg);
  std::string bytes(static_cast<std::size_t>(size), '\0');
  in.read(bytes.data(), size);
  RUNNER_CHECK(!in.bad(), printable(path), ": read failed");
  return bytes;
}

}  // namespace

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& dir) {
  const std::string path = dir + "/tokenizer.model";
  if (!file_exists(path)) {
    RUNNER_CHECK(!file_exists(dir + "/tokenizer.json"), "unsupported tokenizer: ", printable(dir),
                 " has only tokenizer.json (byte-level BPE), which is not read here; "
                 "give the prompt as token ids (--prompt-ids FILE)");
    RUNNER_FAIL(printable(dir), ": no tokenizer.model");
  }
  auto impl = std::make_unique<Impl>();
  const std::string bytes = read_file(path, kMaxTokenizerBytes);
  const auto status = impl->sp.LoadFromSerializedProto(bytes);
  RUNNER_CHECK(status.ok(), printable(path), ": not a sentencepiece model (",
               printable(status.ToString()), ")");
  RUNNER_CHECK(impl->sp.GetPieceSize() > 0, printable(path), ": the model has no pieces");
  return Tokenizer(std::move(impl));
}

std::vector<std::int32_t> Tokenizer::encode(const std::string& text) const {
  std::vector<int> ids;
  const auto status = impl_->sp.Encode(text, &ids);
  RUNNER_CHECK(status.ok(), "tokenizer: cannot encode the text (", printable(status.ToString()),
               ")");
  return std::vector<std::int32_t>(ids.begin(), ids.end());
}

std::string Tokenizer::decode(const std::vector<std::int32_t>& ids) const {
  std::vector<int> in(ids.begin(), ids.end());
  for (int id : in) {
    RUNNER_CHECK(id >= 0 && id < impl_->sp.GetPieceSize(), "tokenizer: token id ", id,
                 ", expected 0 .. ", impl_->sp.GetPieceSize() - 1);
  }
  std::string text;
  const auto status = impl_->sp.Decode(in, &text);
  RUNNER_CHECK(status.ok(), "tokenizer: cannot decode (", printable(status.ToString()), ")");
  return text;
}

std::int32_t Tokenizer::bos_id() const { return impl_->sp.bos_id(); }
std::int32_t Tokenizer::eos_id() const { return impl_->sp.eos_id(); }
std::int64_t Tokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }

std::vector<std::int32_t> read_token_ids(const std::string& path, std::int64_t vocab_size) {
  const std::string text = read_file(path, kMaxTokenFileBytes);
  std::vector<std::int32_t> ids;
  std::size_t i = 0;
  while (i < text.size()) {
    const char ch = text[i];
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == ',') {
      ++i;
      continue;
    }
    std::size_t j = i;
    while (j < text.size() && text[j] >= '0' && text[j] <= '9') ++j;
    const std::string item = text.substr(i, std::max<std::size_t>(j - i, 1));
    RUNNER_CHECK(j > i && j - i <= 10 &&
                     (j == text.size() || text[j] == ' ' || text[j] == '\t' || text[j] == '\n' ||
                      text[j] == '\r' || text[j] == ','),
                 printable(path), ": entry ", ids.size(), " '", printable(text.substr(i, 24)),
                 "' is not a token id (a decimal integer)");
    const long long id = std::strtoll(item.c_str(), nullptr, 10);
    RUNNER_CHECK(id < vocab_size, printable(path), ": entry ", ids.size(), " = ", id,
                 ", expected a token id in [0, ", vocab_size, ")");
    ids.push_back(static_cast<std::int32_t>(id));
    i = j;
  }
  RUNNER_CHECK(!ids.empty(), printable(path), ": no token ids");
  return ids;
}

}  // namespace proxyattn::runner
