// tools/proxyattn/eval.cc: `proxyattn eval`, accuracy of a model on eval/'s task prompts (JSONL
// from eval/generate.py), dense and ProxyAttn, scored by eval/README.md's rule:
//   input [BOS] + sentencepiece(prompt); greedy decoding of at most max_new_tokens tokens, stopping
//   before EOS; an answer is found when it occurs in the normalized output (lowercase, whitespace
//   runs to one space, trimmed) not preceded or followed by a letter or digit; a prompt is correct
//   when every answer is found; 95% Wilson intervals per (task, length, attention) cell.
// Writes DIR/eval.json (the summary), DIR/eval-outputs.jsonl (one line per prompt and mode) and
// DIR/eval.png (accuracy and attention time against length). eval-outputs.jsonl is rewritten
// (atomically) after every prompt, so an interrupted run keeps what it measured.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "proxyattn/runner/model.h"
#include "proxyattn/runner/tokenizer.h"
#include "proxyattn/types.h"
#include "tools/proxyattn/model_cmds.h"
#include "tools/proxyattn/png.h"

namespace proxyattn::cli {

namespace {

using nlohmann::json;

constexpr std::size_t kMaxLineBytes = std::size_t{64} << 20;

struct Record {
  std::string task, prompt;
  std::int64_t target_length = 0, length = 0, seed = 0, max_new_tokens = 0;
  std::vector<std::string> answers;
};

struct Outcome {
  std::string output;
  bool correct = false;
  double fraction = 0.0, prefill_ms = 0.0, attention_ms = 0.0, density = 1.0;
  std::int64_t tokens = 0;
};

[[noreturn]] void eval_fail(const std::string& message) { throw Error("proxyattn: " + message); }

std::string clip(const std::string& s, std::size_t n = 80) {
  std::string out;
  for (char ch : s.substr(0, n)) {
    const unsigned char u = static_cast<unsigned char>(ch);
    out += (u >= 0x20 && u < 0x7f) ? ch : '?';
  }
  return s.size() > n ? out + "..." : out;
}

std::vector<Record> read_tasks(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) eval_fail(path + ": cannot open");
  std::vector<Record> records;
  std::string line;
  std::int64_t number = 0;
  while (std::getline(in, line)) {
    ++number;
    const std::string where = path + " line " + std::to_string(number);
    if (line.size() > kMaxLineBytes) eval_fail(where + ": longer than 64 MiB");
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j;
    try {
      j = json::parse(line);
    } catch (const json::exception& e) {
      eval_fail(where + ": not valid JSON (" + clip(e.what()) + ")");
    }
    if (!j.is_object()) eval_fail(where + ": expected a JSON object");
    auto str = [&](const char* key) {
      if (!j.contains(key) || !j[key].is_string())
        eval_fail(where + ": \"" + key + "\" must be a string");
      return j[key].get<std::string>();
    };
    auto integer = [&](const char* key, std::int64_t lo, std::int64_t hi) {
      if (!j.contains(key) || !j[key].is_number_integer()) {
        eval_fail(where + ": \"" + key + "\" must be an integer");
      }
      const std::int64_t v = j[key].get<std::int64_t>();
      if (v < lo || v > hi) {
        eval_fail(where + ": \"" + key + "\" = " + std::to_string(v) + ", expected " +
                  std::to_string(lo) + " .. " + std::to_string(hi));
      }
      return v;
    };
    Record r;
    r.task = str("task");
    if (r.task.empty() || r.task.size() > 64)
      eval_fail(where + ": \"task\" must have 1 .. 64 characters");
    r.prompt = str("prompt");
    r.target_length = integer("target_length", 1, std::int64_t{1} << 24);
    r.max_new_tokens = integer("max_new_tokens", 1, 4096);
    r.length = j.contains("length") ? integer("length", 1, std::int64_t{1} << 24) : 0;
    r.seed = j.contains("seed") ? integer("seed", 0, INT64_MAX) : 0;
    if (!j.contains("answers") || !j["answers"].is_array() || j["answers"].empty()) {
      eval_fail(where + ": \"answers\" must be a non-empty array of strings");
    }
    for (const json& a : j["answers"]) {
      if (!a.is_string() || a.get<std::string>().empty()) {
        eval_fail(where + ": \"answers\" must be a non-empty array of non-empty strings");
      }
      r.answers.push_back(a.get<std::string>());
    }
    records.push_back(std::move(r));
  }
  if (in.bad()) eval_fail(path + ": read failed");
  if (records.empty()) eval_fail(path + ": no task records");
  return records;
}

// eval/README.md rule 3: lowercase, whitespace runs to one space, trimmed.
std::string normalize(const std::string& s) {
  std::string out;
  bool space = false;
  for (char ch : s) {
    if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += (ch >= 'A' && ch <= 'Z') ? static_cast<char>(ch - 'A' + 'a') : ch;
  }
  return out;
}

bool is_alnum(char ch) { return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z'); }

// eval/README.md rule 4.
bool answer_found(const std::string& answer, const std::string& output) {
  const std::string a = normalize(answer), o = normalize(output);
  if (a.empty()) return false;
  for (std::size_t at = o.find(a); at != std::string::npos; at = o.find(a, at + 1)) {
    const std::size_t end = at + a.size();
    if ((at == 0 || !is_alnum(o[at - 1])) && (end >= o.size() || !is_alnum(o[end]))) return true;
  }
  return false;
}

// 95% Wilson score interval of k successes in n.
std::pair<double, double> wilson(std::int64_t k, std::int64_t n) {
  if (n == 0) return {0.0, 1.0};
  const double z = 1.959963984540054, p = static_cast<double>(k) / n, nn = static_cast<double>(n);
  const double denom = 1 + z * z / nn, centre = (p + z * z / (2 * nn)) / denom;
  const double half = z * std::sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / denom;
  return {std::max(0.0, centre - half), std::min(1.0, centre + half)};
}

// Two-sided exact McNemar test: P(X <= min(lost, won)) * 2 for X ~ Binomial(lost + won, 1/2).
double mcnemar_p(std::int64_t lost, std::int64_t won) {
  const std::int64_t n = lost + won, k = std::min(lost, won);
  if (n == 0) return 1.0;
  double tail = 0.0;
  for (std::int64_t i = 0; i <= k; ++i) {
    tail += std::exp(std::lgamma(n + 1.0) - std::lgamma(i + 1.0) - std::lgamma(n - i + 1.0) -
                     n * std::log(2.0));
  }
  return std::min(1.0, 2 * tail);
}

std::vector<runner::AttentionMode> parse_modes(const std::string& list) {
  std::vector<runner::AttentionMode> modes;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    const runner::AttentionMode m = runner::parse_attention_mode(item);
    if (std::find(modes.begin(), modes.end(), m) != modes.end()) {
      eval_fail("--attention lists '" + clip(item, 20) + "' twice");
    }
    modes.push_back(m);
  }
  if (modes.empty())
    eval_fail("--attention '" + clip(list, 40) + "', expected dense, proxy or dense,proxy");
  return modes;
}

}  // namespace

int run_eval(const EvalOptions& o) {
  const std::vector<runner::AttentionMode> modes = parse_modes(o.attention);
  std::vector<runner::RunOptions> options;
  for (runner::AttentionMode m : modes) options.push_back(o.model.run_options(m));
  std::vector<Record> all = read_tasks(o.tasks_file);
  // Cells in order of first appearance; --limit keeps the first N records of each.
  std::vector<std::pair<std::string, std::int64_t>> cells;
  std::map<std::pair<std::string, std::int64_t>, std::int64_t> cell_count;
  std::vector<Record> records;
  for (Record& r : all) {
    const auto key = std::make_pair(r.task, r.target_length);
    if (cell_count.find(key) == cell_count.end()) cells.push_back(key);
    if (o.limit > 0 && cell_count[key] >= o.limit) continue;
    ++cell_count[key];
    records.push_back(std::move(r));
  }
  model_progress("eval: loading " + o.model.model_dir);
  const runner::Model model = runner::load_model(o.model.model_dir);
  const runner::Tokenizer tok = runner::Tokenizer::load(o.model.model_dir);
  check_output_dir(o.out_dir);  // fail now, not after hours of work

  // outcomes[i][m]: record i, mode m.
  std::vector<std::vector<Outcome>> outcomes(records.size(), std::vector<Outcome>(modes.size()));
  std::string lines;
  for (std::size_t i = 0; i < records.size(); ++i) {
    const Record& r = records[i];
    std::vector<std::int32_t> ids{tok.bos_id()};
    for (std::int32_t id : tok.encode(r.prompt)) ids.push_back(id);
    warn_beyond_context(model, static_cast<std::int64_t>(ids.size()) + r.max_new_tokens);
    for (std::size_t m = 0; m < modes.size(); ++m) {
      model_progress("eval: prompt " + std::to_string(i + 1) + "/" +
                     std::to_string(records.size()) + " (" + clip(r.task, 32) + ", " +
                     std::to_string(r.target_length) + ", " + runner::to_string(modes[m]) + ")");
      const runner::Generation g = runner::generate(model, ids, r.max_new_tokens, options[m]);
      Outcome& out = outcomes[i][m];
      out.output = tok.decode(g.tokens);
      std::int64_t found = 0;
      for (const std::string& a : r.answers) found += answer_found(a, out.output) ? 1 : 0;
      out.correct = found == static_cast<std::int64_t>(r.answers.size());
      out.fraction = static_cast<double>(found) / static_cast<double>(r.answers.size());
      out.prefill_ms = g.prefill.prefill_ms;
      out.attention_ms = g.prefill.attention_ms;
      out.density = g.prefill.mean_density();
      out.tokens = static_cast<std::int64_t>(ids.size());
      json line = {{"task", r.task},
                   {"target_length", r.target_length},
                   {"length", out.tokens},
                   {"seed", r.seed},
                   {"attention", runner::to_string(modes[m])},
                   {"answers", r.answers},
                   {"output", out.output},
                   {"correct", out.correct},
                   {"fraction", out.fraction},
                   {"prefill_ms", out.prefill_ms},
                   {"attention_ms", out.attention_ms},
                   {"density", g.prefill.density}};
      lines += line.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
    }
    // The outputs so far, replaced whole after every prompt: an interrupted run keeps them.
    write_file_atomic(output_path(o.out_dir, "eval-outputs.jsonl"), lines);
  }
  model_progress("");

  // Summary per (task, length, mode), with paired counts against dense.
  const auto dense_it = std::find(modes.begin(), modes.end(), runner::AttentionMode::kDense);
  const std::size_t dense_m = static_cast<std::size_t>(dense_it - modes.begin());
  json summary = json::array();
  std::printf("proxyattn eval: %s on %s, %zu prompts\n", o.model.model_dir.c_str(),
              o.tasks_file.c_str(), records.size());
  for (std::size_t m = 0; m < modes.size(); ++m) {
    if (modes[m] == runner::AttentionMode::kProxy) {
      const Config& c = options[m].config;
      std::printf(
          "  ProxyAttn config: block %d, gamma %g, min budget %lld tokens, stride %d, "
          "proxy heads %d\n",
          c.block_size, c.gamma, static_cast<long long>(c.min_budget_tokens), c.stride,
          c.num_proxy_heads);
    }
  }
  std::printf("  %-16s %7s %-6s %5s %9s %15s %8s %9s %11s %8s %9s\n", "task", "length", "mode", "n",
              "accuracy", "95% interval", "partial", "prefill", "attention", "density", "lost/won");
  std::map<std::pair<std::string, std::int64_t>, std::vector<double>> plot_acc, plot_lo, plot_hi;
  std::map<std::pair<std::string, std::int64_t>, double> plot_attn_sum, plot_attn_n;
  for (const auto& cell : cells) {
    for (std::size_t m = 0; m < modes.size(); ++m) {
      std::int64_t n = 0, k = 0, lost = 0, won = 0;
      double partial = 0, prefill = 0, attention = 0, density = 0;
      for (std::size_t i = 0; i < records.size(); ++i) {
        if (records[i].task != cell.first || records[i].target_length != cell.second) continue;
        const Outcome& out = outcomes[i][m];
        ++n;
        k += out.correct ? 1 : 0;
        partial += out.fraction;
        prefill += out.prefill_ms;
        attention += out.attention_ms;
        density += out.density;
        if (dense_it != modes.end() && m != dense_m) {
          const bool d = outcomes[i][dense_m].correct;
          lost += (d && !out.correct) ? 1 : 0;
          won += (!d && out.correct) ? 1 : 0;
        }
      }
      if (n == 0) continue;
      const auto [lo, hi] = wilson(k, n);
      const double acc = static_cast<double>(k) / n;
      json row = {{"task", cell.first},
                  {"target_length", cell.second},
                  {"attention", runner::to_string(modes[m])},
                  {"prompts", n},
                  {"correct", k},
                  {"accuracy", acc},
                  {"interval95", {lo, hi}},
                  {"partial", partial / n},
                  {"mean_prefill_ms", prefill / n},
                  {"mean_attention_ms", attention / n},
                  {"mean_density", density / n}};
      std::string paired = "-";
      if (dense_it != modes.end() && m != dense_m) {
        row["lost_vs_dense"] = lost;
        row["won_vs_dense"] = won;
        row["mcnemar_p"] = mcnemar_p(lost, won);
        paired = std::to_string(lost) + "/" + std::to_string(won);
      }
      summary.push_back(row);
      char interval[32];
      std::snprintf(interval, sizeof(interval), "%.1f-%.1f%%", 100 * lo, 100 * hi);
      std::printf("  %-16s %7lld %-6s %5lld %8.1f%% %15s %7.1f%% %7.0fms %9.0fms %8.3f %9s\n",
                  clip(cell.first, 16).c_str(), static_cast<long long>(cell.second),
                  runner::to_string(modes[m]), static_cast<long long>(n), 100 * acc, interval,
                  100 * partial / n, prefill / n, attention / n, density / n, paired.c_str());
      const auto series = std::make_pair(cell.first, static_cast<std::int64_t>(m));
      plot_acc[series].push_back(static_cast<double>(cell.second));
      plot_acc[series].push_back(100 * acc);
      plot_lo[series].push_back(100 * lo);
      plot_hi[series].push_back(100 * hi);
      plot_attn_sum[{runner::to_string(modes[m]), cell.second}] += attention;
      plot_attn_n[{runner::to_string(modes[m]), cell.second}] += static_cast<double>(n);
    }
  }

  LinePanel acc_panel{
      "Accuracy (95% Wilson interval)", "target length (tokens)", "accuracy (%)", {}, true};
  for (const auto& [key, xy] : plot_acc) {
    Series s;
    s.name = key.first + ", " + runner::to_string(modes[static_cast<std::size_t>(key.second)]);
    for (std::size_t i = 0; i + 1 < xy.size(); i += 2) {
      s.x.push_back(xy[i]);
      s.y.push_back(xy[i + 1]);
    }
    s.lo = plot_lo[key];
    s.hi = plot_hi[key];
    acc_panel.series.push_back(std::move(s));
  }
  LinePanel time_panel{"Prefill attention time (mean per prompt)",
                       "target length (tokens)",
                       "attention time (ms)",
                       {},
                       true};
  std::map<std::string, Series> by_mode;
  for (const auto& [key, sum] : plot_attn_sum) {
    Series& s = by_mode[key.first];
    s.name = key.first;
    s.x.push_back(static_cast<double>(key.second));
    s.y.push_back(sum / plot_attn_n[key]);
  }
  for (auto& [name, s] : by_mode) time_panel.series.push_back(std::move(s));

  json j;
  j["model"] = o.model.model_dir;
  j["tasks_file"] = o.tasks_file;
  j["prompts"] = records.size();
  j["summary"] = summary;
  for (std::size_t m = 0; m < modes.size(); ++m) {
    if (modes[m] != runner::AttentionMode::kProxy) continue;
    json cfg;
    for (const ConfigField& f : config_fields())
      cfg[f.name] = get_config_field(options[m].config, f.name);
    j["proxy_config"] = cfg;
  }
  const std::string text = j.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
  write_line_figure(output_path(o.out_dir, "eval.png"), "proxyattn eval: " + clip(o.model.model_dir, 60),
                    {acc_panel, time_panel});
  write_file_atomic(output_path(o.out_dir, "eval.json"), text);
  std::printf("  wrote %s, %s, %s\n", output_path(o.out_dir, "eval.json").c_str(),
              output_path(o.out_dir, "eval-outputs.jsonl").c_str(),
              output_path(o.out_dir, "eval.png").c_str());
  if (o.model.json)
    std::cout << j.dump(-1, ' ', false, json::error_handler_t::replace) << std::endl;
  return 0;
}

}  // namespace proxyattn::cli
