// src/common/config.cc: Config::validate and the derived quantities of docs/SPEC.md section 2.
#include "proxyattn/config.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <limits>
#include <sstream>

#include "common/check.h"
#include "proxyattn/types.h"

namespace proxyattn {

const char* to_string(LastBlockSelection mode) {
  return mode == LastBlockSelection::kExact ? "exact" : "proxy";
}

LastBlockSelection parse_last_block_selection(const std::string& name) {
  if (name == "exact") return LastBlockSelection::kExact;
  if (name == "proxy") return LastBlockSelection::kProxy;
  PROXYATTN_FAIL("last_block_selection = '", detail::printable(name), "', expected exact or proxy");
}

void Config::validate() const {
  PROXYATTN_CHECK(block_size == 64 || block_size == 128, "config.block_size = ", block_size,
                  ", expected 64 or 128");
  PROXYATTN_CHECK(stride >= 1 && block_size % stride == 0, "config.stride = ", stride,
                  ", expected a positive divisor of block_size (", block_size, ")");
  PROXYATTN_CHECK(gamma > 0.0 && gamma <= 1.0, "config.gamma = ", gamma, ", expected 0 < gamma <= 1");
  PROXYATTN_CHECK(num_proxy_heads >= 1, "config.num_proxy_heads = ", num_proxy_heads,
                  ", expected >= 1");
  PROXYATTN_CHECK(min_budget_tokens >= 0, "config.min_budget_tokens = ", min_budget_tokens,
                  ", expected >= 0");
  PROXYATTN_CHECK(max_budget_tokens >= min_budget_tokens && max_budget_tokens > 0,
                  "config.max_budget_tokens = ", max_budget_tokens,
                  ", expected > 0 and >= min_budget_tokens (", min_budget_tokens,
                  "), or Config::kUnbounded");
  PROXYATTN_CHECK(dense_below_tokens == kAuto || dense_below_tokens >= 0,
                  "config.dense_below_tokens = ", dense_below_tokens,
                  ", expected -1 (auto) or >= 0");
  PROXYATTN_CHECK(last_block_selection == LastBlockSelection::kExact ||
                      last_block_selection == LastBlockSelection::kProxy,
                  "config.last_block_selection = ", static_cast<int>(last_block_selection),
                  ", expected kExact (0) or kProxy (1)");
  PROXYATTN_CHECK(forced_density == 0.0 || (forced_density > 0.0 && forced_density <= 1.0),
                  "config.forced_density = ", forced_density, ", expected 0 (off) or in (0, 1]");
  PROXYATTN_CHECK(std::isfinite(scale) && scale >= 0.0f, "config.scale = ", scale,
                  ", expected 0 (1/sqrt(head_dim)) or a positive finite number");
}

std::int64_t Config::dense_below() const {
  if (dense_below_tokens != kAuto) return dense_below_tokens;
  return std::max<std::int64_t>(2 * block_size, min_budget_tokens);
}

namespace {

// ceil(n / b) for n >= 0 without the overflow of (n + b - 1) / b near INT64_MAX.
std::int64_t ceil_div(std::int64_t n, std::int64_t b) { return n / b + (n % b != 0 ? 1 : 0); }

}  // namespace

std::int64_t Config::min_budget_blocks() const { return ceil_div(min_budget_tokens, block_size); }

std::int64_t Config::max_budget_blocks() const {
  return max_budget_tokens == kUnbounded ? kUnbounded : ceil_div(max_budget_tokens, block_size);
}

float Config::scale_for(std::int64_t head_dim) const {
  return scale != 0.0f ? scale : static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
}

namespace {

// One row of the field table: the public description plus how to read and write the member.
struct FieldAccess {
  ConfigField field;
  std::function<void(Config&, const std::string&)> set;
  std::function<std::string(const Config&)> get;
};

[[noreturn]] void bad_value(const ConfigField& f, const std::string& text, const char* expected) {
  // Cut and escaped: a hostile value never floods or forges lines of the message.
  PROXYATTN_FAIL("config.", f.name, " (", f.flag, ") = '", detail::printable(text), "', expected ",
                 expected);
}

// Whole-string integer in [lo, hi].
std::int64_t parse_int(const ConfigField& f, const std::string& text, std::int64_t lo,
                       std::int64_t hi, const char* expected) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) {
    bad_value(f, text, expected);
  }
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (errno != 0 || end != text.c_str() + text.size() || v < lo || v > hi) {
    bad_value(f, text, expected);
  }
  return v;
}

// Whole-string finite number.
double parse_real(const ConfigField& f, const std::string& text, const char* expected) {
  if (text.empty() || std::isspace(static_cast<unsigned char>(text[0]))) {
    bad_value(f, text, expected);
  }
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) {
    bad_value(f, text, expected);
  }
  return v;
}

bool parse_flag(const ConfigField& f, const std::string& text) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  bad_value(f, text, "true or false");
}

// Shortest text that reads back to the same double.
std::string real_text(double v) {
  for (int digits = 6; digits <= 17; ++digits) {
    std::ostringstream os;
    os.precision(digits);
    os << v;
    if (std::strtod(os.str().c_str(), nullptr) == v) return os.str();
  }
  return std::to_string(v);
}

constexpr std::int64_t kIntMax = std::numeric_limits<int>::max();
constexpr std::int64_t kInt64Max = std::numeric_limits<std::int64_t>::max();

const std::vector<FieldAccess>& field_table() {
  static const std::vector<FieldAccess> table = [] {
    std::vector<FieldAccess> t;
    auto add = [&t](ConfigField f, std::function<void(Config&, const std::string&)> set,
                    std::function<std::string(const Config&)> get) {
      t.push_back({f, std::move(set), std::move(get)});
    };
    add({"block_size", "--block", "int", "", "b: square tile of the mask and the kernel, 64 or 128"},
        [](Config& c, const std::string& s) {
          c.block_size = static_cast<int>(
              parse_int(config_fields()[0], s, 1, kIntMax, "64 or 128"));
        },
        [](const Config& c) { return std::to_string(c.block_size); });
    add({"stride", "--stride", "int", "", "s: the proxy keeps positions t % s == 0; divides b"},
        [](Config& c, const std::string& s) {
          c.stride = static_cast<int>(
              parse_int(config_fields()[1], s, 1, kIntMax, "a positive divisor of block_size"));
        },
        [](const Config& c) { return std::to_string(c.stride); });
    add({"gamma", "--gamma", "float", "",
         "attention mass each head's budget covers, 0 < gamma <= 1"},
        [](Config& c, const std::string& s) {
          c.gamma = parse_real(config_fields()[2], s, "a number in (0, 1]");
        },
        [](const Config& c) { return real_text(c.gamma); });
    add({"num_proxy_heads", "--proxy-heads", "int", "",
         "g: proxy heads, a divisor of num_kv_heads"},
        [](Config& c, const std::string& s) {
          c.num_proxy_heads = static_cast<int>(
              parse_int(config_fields()[3], s, 1, kIntMax, "a positive divisor of num_kv_heads"));
        },
        [](const Config& c) { return std::to_string(c.num_proxy_heads); });
    add({"min_budget_tokens", "--min-budget", "int", "",
         "lower clamp of every budget, tokens >= 0 (rounded up to blocks)"},
        [](Config& c, const std::string& s) {
          c.min_budget_tokens =
              parse_int(config_fields()[4], s, 0, kInt64Max, "an integer >= 0 (tokens)");
        },
        [](const Config& c) { return std::to_string(c.min_budget_tokens); });
    add({"max_budget_tokens", "--max-budget", "int", "none",
         "upper clamp of every budget, tokens >= min budget; none: no clamp"},
        [](Config& c, const std::string& s) {
          c.max_budget_tokens =
              (s == "none" || s == "-1")
                  ? Config::kUnbounded
                  : parse_int(config_fields()[5], s, 1, kInt64Max, "an integer > 0 or none");
        },
        [](const Config& c) {
          return c.max_budget_tokens == Config::kUnbounded ? std::string("none")
                                                           : std::to_string(c.max_budget_tokens);
        });
    add({"dense_below_tokens", "--dense-below", "int", "auto",
         "sequences of at most this many tokens run dense; auto: max(2 b, min budget)"},
        [](Config& c, const std::string& s) {
          c.dense_below_tokens =
              (s == "auto" || s == "-1")
                  ? Config::kAuto
                  : parse_int(config_fields()[6], s, 0, kInt64Max, "an integer >= 0 or auto");
        },
        [](const Config& c) {
          return c.dense_below_tokens == Config::kAuto ? std::string("auto")
                                                       : std::to_string(c.dense_below_tokens);
        });
    add({"keep_sink", "--keep-sink", "bool", "", "always select key block 0 (true|false)"},
        [](Config& c, const std::string& s) { c.keep_sink = parse_flag(config_fields()[7], s); },
        [](const Config& c) { return std::string(c.keep_sink ? "true" : "false"); });
    add({"keep_diagonal", "--keep-diagonal", "bool", "",
         "always select the diagonal block (true|false)"},
        [](Config& c, const std::string& s) {
          c.keep_diagonal = parse_flag(config_fields()[8], s);
        },
        [](const Config& c) { return std::string(c.keep_diagonal ? "true" : "false"); });
    add({"last_block_selection", "--last-block", "choice", "",
         "ranking of each head's last query block: exact|proxy"},
        [](Config& c, const std::string& s) {
          if (s != "exact" && s != "proxy") bad_value(config_fields()[9], s, "exact or proxy");
          c.last_block_selection = parse_last_block_selection(s);
        },
        [](const Config& c) { return std::string(to_string(c.last_block_selection)); });
    add({"forced_density", "--density", "float", "off",
         "benchmarks only: each head keeps this share of every row, 0 < d <= 1; off"},
        [](Config& c, const std::string& s) {
          c.forced_density =
              s == "off" ? 0.0 : parse_real(config_fields()[10], s, "a number in (0, 1] or off");
          if (s != "off" && !(c.forced_density > 0.0)) {
            bad_value(config_fields()[10], s, "a number in (0, 1] or off");
          }
        },
        [](const Config& c) {
          return c.forced_density == 0.0 ? std::string("off") : real_text(c.forced_density);
        });
    add({"scale", "--scale", "float", "default",
         "softmax scale; default: 1/sqrt(head_dim)"},
        [](Config& c, const std::string& s) {
          c.scale = s == "default" ? 0.0f
                                   : static_cast<float>(parse_real(
                                         config_fields()[11], s, "a positive number or default"));
        },
        [](const Config& c) {
          return c.scale == 0.0f ? std::string("default") : real_text(c.scale);
        });
    return t;
  }();
  return table;
}

const FieldAccess& find_field(const std::string& name) {
  for (const FieldAccess& a : field_table()) {
    if (name == a.field.name) return a;
  }
  const std::string shown = name.size() > 64 ? name.substr(0, 64) + "..." : name;
  PROXYATTN_FAIL("config field '", shown, "' does not exist, expected one of config_fields()");
}

}  // namespace

const std::vector<ConfigField>& config_fields() {
  static const std::vector<ConfigField> fields = [] {
    std::vector<ConfigField> f;
    for (const FieldAccess& a : field_table()) f.push_back(a.field);
    return f;
  }();
  return fields;
}

void set_config_field(Config& config, const std::string& name, const std::string& text) {
  Config updated = config;  // unchanged on error
  find_field(name).set(updated, text);
  config = updated;
}

std::string get_config_field(const Config& config, const std::string& name) {
  return find_field(name).get(config);
}

}  // namespace proxyattn
