// fuzz/config_fuzz.cc: libFuzzer target for the config field table (docs/SPEC.md section 2).
//
// Property: on any sequence of (field, text) pairs, set_config_field() and Config::validate()
// return or throw proxyattn::Error, nothing else (ASan/UBSan watch the memory). A config that
// validates has in-range fields, its derived budgets are ordered, every field prints back
// through get_config_field() and reads back to the same config, and error messages stay one
// short printable line.
//
// Input: lines; each line "I=TEXT" sets field number I % number-of-fields to TEXT.
// Run: ./build-fuzz/config_fuzz -max_total_time=20 /tmp/config_corpus fuzz/config_corpus
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "proxyattn/config.h"
#include "proxyattn/types.h"

namespace {

void check_message(const char* what) {
  const std::string m = what;
  // Values are cut to 64 bytes and escaped; the rest of a message is ours and short.
  if (m.size() > 600) std::abort();
  for (char c : m) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) == 0x7f) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using proxyattn::Config;
  const auto& fields = proxyattn::config_fields();
  const std::string input(reinterpret_cast<const char*>(data), size);
  Config c;
  std::size_t begin = 0;
  while (begin < input.size()) {
    std::size_t end = input.find('\n', begin);
    if (end == std::string::npos) end = input.size();
    const std::string line = input.substr(begin, end - begin);
    begin = end + 1;
    const std::size_t eq = line.find('=');
    if (eq == std::string::npos || eq == 0 || eq > 3) continue;
    unsigned index = 0;
    for (std::size_t i = 0; i < eq; ++i) index = index * 10 + static_cast<unsigned char>(line[i]) % 10;
    const auto& f = fields[index % fields.size()];
    try {
      proxyattn::set_config_field(c, f.name, line.substr(eq + 1));
    } catch (const proxyattn::Error& e) {
      check_message(e.what());
    }
  }
  try {
    c.validate();
  } catch (const proxyattn::Error& e) {
    check_message(e.what());
    return 0;
  }
  if (c.min_budget_blocks() < 0 || c.max_budget_blocks() < c.min_budget_blocks()) std::abort();
  if (!(c.gamma > 0.0 && c.gamma <= 1.0)) std::abort();
  // Print every field and read it back: the same config (the table's get and set agree).
  Config back;
  for (const auto& f : fields) {
    proxyattn::set_config_field(back, f.name, proxyattn::get_config_field(c, f.name));
  }
  for (const auto& f : fields) {
    if (proxyattn::get_config_field(back, f.name) != proxyattn::get_config_field(c, f.name)) {
      std::abort();
    }
  }
  back.validate();
  return 0;
}
