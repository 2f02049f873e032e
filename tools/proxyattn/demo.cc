// tools/proxyattn/demo.cc: `proxyattn demo`, the shipped model (models/pa-tiny-8k) on an embedded
// held-out needle-in-a-haystack prompt, dense then ProxyAttn: both answers, prefill and attention
// times, their ratio, density per layer, and DIR/demo-blocks.png of the selected blocks.
//
// The prompt (models/pa-tiny-8k/demo/, made by make_demo.py from held-out text with eval/'s
// generators) is compiled into the binary. The demo's config is block 64, stride 8, gamma 0.85,
// min budget 256 tokens (demo_config()); config flags override it.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxyattn/runner/model.h"
#include "proxyattn/runner/tokenizer.h"
#include "proxyattn/types.h"
#include "proxyattn_demo_data.h"
#include "tools/proxyattn/model_cmds.h"
#include "tools/proxyattn/png.h"

namespace proxyattn::cli {

/// The demo's documented config: 64-token blocks, gamma 0.85, budgets of at least 256 tokens,
/// proxy stride 8 (a cheaper plan; the shipped model's heads are broad, see its model card).
Config demo_config() {
  Config c;
  c.block_size = 64;
  c.stride = 8;
  c.gamma = 0.85;
  c.min_budget_tokens = 256;
  return c;
}

namespace {

std::vector<std::string> lines(std::string_view text) {
  std::vector<std::string> out;
  std::string line;
  std::istringstream in{std::string(text)};
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

bool is_alnum(char ch) {
  return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z');
}

// eval/README.md's rule for one answer: found in the output, not next to a letter or digit.
// (Answers here are digits, so case and whitespace normalization change nothing.)
bool found(const std::string& answer, const std::string& output) {
  for (std::size_t at = output.find(answer); at != std::string::npos;
       at = output.find(answer, at + 1)) {
    const bool before = at > 0 && is_alnum(output[at - 1]);
    const std::size_t end = at + answer.size();
    const bool after = end < output.size() && is_alnum(output[end]);
    if (!before && !after) return true;
  }
  return false;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

struct ModeResult {
  std::string text;
  bool correct = false;
  runner::Generation gen;
};

}  // namespace

int run_demo(const DemoOptions& o) {
  const std::string_view prompt =
      o.short_form ? demo_data::k_short_prompt : demo_data::k_demo_prompt;
  const std::vector<std::string> answers =
      lines(o.short_form ? demo_data::k_short_answer : demo_data::k_demo_answer);
  const runner::RunOptions dense =
      o.model.run_options(runner::AttentionMode::kDense, demo_config());
  const runner::RunOptions proxy =
      o.model.run_options(runner::AttentionMode::kProxy, demo_config());
  const std::string figure = output_path(o.out_dir, "demo-blocks.png");

  check_output_dir(o.out_dir);
  model_progress("demo: loading " + o.model.model_dir);
  const runner::Model model = runner::load_model(o.model.model_dir);
  const runner::Tokenizer tok = runner::Tokenizer::load(o.model.model_dir);
  std::vector<std::int32_t> ids{tok.bos_id()};
  for (std::int32_t id : tok.encode(std::string(prompt))) ids.push_back(id);
  const std::int64_t max_new = 16;

  std::vector<BlockPanel> panels;
  runner::PrefillHooks hooks;
  hooks.on_plan = [&](std::int64_t layer, const Plan& plan) {
    for (std::int64_t h = 0; h < plan.layout.num_qo_heads; ++h) {
      panels.push_back(block_panel(plan, h, "layer " + std::to_string(layer) + ", "));
    }
  };
  ModeResult res[2];
  const runner::RunOptions* opts[2] = {&dense, &proxy};
  for (int m = 0; m < 2; ++m) {
    model_progress(std::string("demo: ") + (m ? "ProxyAttn" : "dense") + " prefill of " +
                   std::to_string(ids.size()) + " tokens, then greedy decoding");
    res[m].gen =
        runner::generate(model, ids, max_new, *opts[m], m ? hooks : runner::PrefillHooks{});
    res[m].text = tok.decode(res[m].gen.tokens);
    res[m].correct = true;
    for (const std::string& a : answers) res[m].correct = res[m].correct && found(a, res[m].text);
  }
  // More prefills, the modes alternating, so that both see the same machine load; the times
  // reported are medians over all runs of a mode (the first from the generation above).
  // Per run: ProxyAttn's attention time over the time dense attention would take on the selected
  // fraction, sum over layers of density x dense layer time (1 = time proportional to density).
  const std::vector<double>& layer_density = res[1].gen.prefill.density;
  auto vs_density = [&](const runner::PrefillStats& dense_run, double proxy_ms) {
    double expected = 0.0;
    for (std::size_t l = 0; l < layer_density.size(); ++l) {
      expected += layer_density[l] * dense_run.layer_attention_ms[l];
    }
    return expected > 0 ? proxy_ms / expected : 0.0;
  };
  std::vector<double> attn_ms[2], prefill_ms[2], plan_ms, density_ratio;
  for (int m = 0; m < 2; ++m) {
    attn_ms[m].push_back(res[m].gen.prefill.attention_ms);
    prefill_ms[m].push_back(res[m].gen.prefill.prefill_ms);
  }
  plan_ms.push_back(res[1].gen.prefill.plan_ms);
  density_ratio.push_back(vs_density(res[0].gen.prefill, res[1].gen.prefill.attention_ms));
  runner::PrefillStats last_dense;
  for (int r = 1; r < o.repeats; ++r) {
    for (int m = 0; m < 2; ++m) {
      model_progress("demo: timing run " + std::to_string(r + 1) + "/" + std::to_string(o.repeats) +
                     (m ? " (ProxyAttn)" : " (dense)"));
      runner::Session session(model, *opts[m], static_cast<std::int64_t>(ids.size()));
      runner::PrefillStats st;
      session.prefill(ids, &st);
      attn_ms[m].push_back(st.attention_ms);
      prefill_ms[m].push_back(st.prefill_ms);
      if (m == 0) last_dense = st;
      if (m == 1) plan_ms.push_back(st.plan_ms);
      if (m == 1) density_ratio.push_back(vs_density(last_dense, st.attention_ms));
    }
  }
  model_progress("demo: drawing " + figure);
  const Config& c = proxy.config;
  std::ostringstream title;
  title << "pa-tiny-8k, " << ids.size()
        << "-token held-out prompt: blocks ProxyAttn selected (block " << c.block_size
        << ", stride " << c.stride << ", gamma " << c.gamma << ", min budget "
        << c.min_budget_tokens << " tokens)";
  write_block_figure(figure, title.str(), panels, static_cast<int>(model.config.num_qo_heads));
  model_progress("");

  const runner::PrefillStats& sp = res[1].gen.prefill;
  const double t_attn[2] = {median(attn_ms[0]), median(attn_ms[1])};
  const double t_prefill[2] = {median(prefill_ms[0]), median(prefill_ms[1])};
  const double t_plan = median(plan_ms);
  const double t_ratio = median(density_ratio);
  const double attn_speedup = t_attn[1] > 0 ? t_attn[0] / t_attn[1] : 0.0;
  const double prefill_speedup = t_prefill[1] > 0 ? t_prefill[0] / t_prefill[1] : 0.0;
  std::string expected;
  for (const std::string& a : answers) expected += (expected.empty() ? "" : ", ") + a;
  std::printf("proxyattn demo: %s, a %zu-token held-out prompt (%s), expected answer %s\n",
              o.model.model_dir.c_str(), ids.size(),
              o.short_form ? "needle in a haystack" : "4 needles, one asked", expected.c_str());
  std::printf("  ProxyAttn config: block %d, stride %d, gamma %g, min budget %lld tokens\n",
              c.block_size, c.stride, c.gamma, static_cast<long long>(c.min_budget_tokens));
  std::printf("  %-9s %-26s %-8s %12s %14s\n", "attention", "answer", "correct", "prefill ms",
              "attention ms");
  const char* names[2] = {"dense", "ProxyAttn"};
  for (int m = 0; m < 2; ++m) {
    std::printf("  %-9s %-26s %-8s %12.1f %14.1f\n", names[m], ("\"" + res[m].text + "\"").c_str(),
                res[m].correct ? "yes" : "NO", t_prefill[m], t_attn[m]);
  }
  std::printf(
      "  attention speedup %.2fx, prefill speedup %.2fx (dense time / ProxyAttn time; "
      "medians of %d runs each, alternating; ProxyAttn's plan %.1f ms)\n",
      attn_speedup, prefill_speedup, o.repeats, t_plan);
  std::printf("  density per layer:");
  for (double d : sp.density) std::printf(" %.2f", d);
  std::printf(" (mean %.2f)\n", sp.mean_density());
  std::printf(
      "  ProxyAttn attention time / (density x dense attention time): %.2f "
      "(1 = proportional to density; the plan included)\n",
      t_ratio);
  std::printf("  wrote %s (selected blocks of every layer and head)\n", figure.c_str());
  if (o.model.json) {
    nlohmann::json j;
    for (int m = 0; m < 2; ++m) {
      const runner::PrefillStats& s = res[m].gen.prefill;
      j[m ? "proxy" : "dense"] = {{"text", res[m].text},
                                  {"correct", res[m].correct},
                                  {"prefill_ms", t_prefill[m]},
                                  {"attention_ms", t_attn[m]},
                                  {"prefill_ms_runs", prefill_ms[m]},
                                  {"attention_ms_runs", attn_ms[m]},
                                  {"decode_tok_s", res[m].gen.decode_tokens_per_s()},
                                  {"density", s.density}};
    }
    j["prompt_tokens"] = ids.size();
    j["plan_ms"] = t_plan;
    j["attention_vs_density"] = t_ratio;
    j["repeats"] = o.repeats;
    j["answers"] = answers;
    j["attention_speedup"] = attn_speedup;
    j["prefill_speedup"] = prefill_speedup;
    j["figure"] = figure;
    nlohmann::json cfg;
    for (const ConfigField& f : config_fields()) cfg[f.name] = get_config_field(c, f.name);
    j["config"] = cfg;
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  }
  return res[0].correct && res[1].correct ? 0 : 1;
}

}  // namespace proxyattn::cli
