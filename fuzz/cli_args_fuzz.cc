// fuzz/cli_args_fuzz.cc: libFuzzer target for the `proxyattn` command line's parser.
//
// Property: on any argv, building the whole app (every subcommand) and parsing returns or throws
// a CLI11 parse error or proxyattn::Error, nothing else (no other exception, no crash; ASan and
// UBSan watch the memory); nothing runs. After a successful parse the parsed subcommand's config
// flags validate or throw proxyattn::Error. Error messages stay bounded and, once escaped as the
// CLI prints them, one printable line.
//
// Input: the argv words after "proxyattn", separated by NUL or newline bytes.
// Run: ./build-fuzz/cli_args_fuzz -max_total_time=30 /tmp/cli_corpus fuzz/cli_args_corpus
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "tools/proxyattn/app.h"

namespace {

void check_message(const std::string& what) {
  const std::string line = proxyattn::printable(what, 1000);
  if (line.size() > 4200) std::abort();
  for (char c : line) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::vector<std::string> words{"proxyattn"};
  std::string word;
  for (std::size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\0' || c == '\n') {
      words.push_back(word);
      word.clear();
    } else {
      word += c;
    }
  }
  if (!word.empty()) words.push_back(word);
  if (words.size() > 64) return 0;
  std::vector<char*> argv;
  for (std::string& w : words) argv.push_back(w.data());

  CLI::App app{"proxyattn"};
  proxyattn::cli::Commands c;
  proxyattn::cli::build_app(app, c);
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    check_message(e.what());
    return 0;
  } catch (const proxyattn::Error& e) {
    check_message(e.what());
    return 0;
  }
  for (const auto* opts : {&c.bench_opts, &c.check_opts, &c.plan_opts}) {
    if (opts->app == nullptr || !opts->app->parsed()) continue;
    try {
      opts->config();
    } catch (const proxyattn::Error& e) {
      check_message(e.what());
    }
  }
  return 0;
}
