// tools/proxyattn/generate.cc: `proxyattn generate`, greedy generation with a Llama-family model,
// and the pieces the model commands share (flags, registration).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "proxyattn/runner/model.h"
#include "proxyattn/runner/tokenizer.h"
#include "proxyattn/types.h"
#include "proxyattn_demo_data.h"
#include "tools/proxyattn/cli.h"
#include "tools/proxyattn/model_cmds.h"
#include "tools/proxyattn/png.h"

namespace proxyattn::cli {

namespace {

bool exists(const std::string& path) { return std::ifstream(path).good(); }

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.good()) throw Error("proxyattn: " + path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error("proxyattn: " + path + ": read failed");
  return ss.str();
}

}  // namespace

void model_progress(const std::string& message) {
  // Only on a terminal, as the other commands do: a failing run's stderr is its one error line.
  if (isatty(STDERR_FILENO)) std::cerr << "\r\033[K" << message << std::flush;
}

void warn_beyond_context(const runner::Model& model, std::int64_t positions) {
  static bool warned = false;
  const std::int64_t limit = model.config.max_position_embeddings;
  if (warned || limit <= 0 || positions <= limit) return;
  warned = true;
  if (isatty(STDERR_FILENO)) std::cerr << "\r\033[K";
  std::cerr << "proxyattn: warning: " << positions << " positions (prompt + new tokens) exceed the "
            << "model's max_position_embeddings = " << limit
            << "; tokens past it are outside the trained context\n";
}

std::string shipped_model_dir() {
  const std::string relative = "models/pa-tiny-8k";
  if (exists(relative + "/config.json")) return relative;
  return std::string(demo_data::kSourceDir) + "/" + relative;
}

void ModelOptions::add_to(CLI::App& app, const std::string& model_default, const Config& defaults) {
  auto* opt = app.add_option("--model", model_dir,
                             "model directory (config.json, *.safetensors, "
                             "tokenizer.model)");
  if (model_default.empty()) {
    opt->required();
  } else {
    model_dir = model_default;
    opt->capture_default_str();
  }
  for (const ConfigField& f : config_fields()) {
    std::string help = f.help;
    help += " [" + get_config_field(defaults, f.name) + "]";
    app.add_option_function<std::string>(
        f.flag,
        [this, name = std::string(f.name)](const std::string& text) {
          config_text.emplace_back(name, text);
        },
        help);
  }
  // Numbers go through the strict parser of the other subcommands: the whole text, in range, and
  // a message that shows the range (not CLI11's "0.000000 to 1.79e308").
  app.add_option_function<std::string>(
      "--threads",
      [this](const std::string& text) {
        threads = static_cast<int>(parse_int_flag("--threads", text, 0, 2147483647));
      },
      "CPU threads (0: all hardware threads) [0]");
  app.add_flag("--json", json, "end stdout with one JSON object");
}

Config ModelOptions::config(Config defaults) const {
  for (const auto& [name, text] : config_text) set_config_field(defaults, name, text);
  defaults.validate();
  return defaults;
}

runner::RunOptions ModelOptions::run_options(runner::AttentionMode mode,
                                             const Config& defaults) const {
  runner::RunOptions r;
  r.attention = mode;
  r.config = config(defaults);
  r.num_threads = threads;
  return r;
}

int run_generate(const GenerateOptions& o) {
  const runner::AttentionMode mode = runner::parse_attention_mode(o.attention);
  const runner::RunOptions options = o.model.run_options(mode);
  if ((o.prompt_file.empty()) == (o.prompt_ids.empty())) {
    throw Error("proxyattn: give exactly one of --prompt-file and --prompt-ids");
  }
  model_progress("loading " + o.model.model_dir);
  const runner::Model model = runner::load_model(o.model.model_dir);
  std::vector<std::int32_t> ids;
  std::unique_ptr<runner::Tokenizer> tok;
  if (!o.prompt_ids.empty()) {
    ids = runner::read_token_ids(o.prompt_ids, model.config.vocab_size);
  } else {
    tok = std::make_unique<runner::Tokenizer>(runner::Tokenizer::load(o.model.model_dir));
    if (model.config.bos_token_id >= 0)
      ids.push_back(static_cast<std::int32_t>(model.config.bos_token_id));
    for (std::int32_t id : tok->encode(read_text_file(o.prompt_file))) ids.push_back(id);
  }
  warn_beyond_context(model, static_cast<std::int64_t>(ids.size()) + o.max_new_tokens);
  model_progress("prefill of " + std::to_string(ids.size()) + " tokens (" +
                 runner::to_string(mode) + " attention)");
  const runner::Generation g = runner::generate(model, ids, o.max_new_tokens, options);
  model_progress("");
  std::string text;
  if (tok) {
    text = tok->decode(g.tokens);
  } else {
    for (std::size_t i = 0; i < g.tokens.size(); ++i)
      text += (i ? " " : "") + std::to_string(g.tokens[i]);
  }
  const runner::PrefillStats& st = g.prefill;
  std::printf("proxyattn generate: %s, %lld prompt tokens, %s attention", o.model.model_dir.c_str(),
              static_cast<long long>(ids.size()), runner::to_string(mode));
  if (mode == runner::AttentionMode::kProxy) {
    std::printf(" (block %d, gamma %g, min budget %lld tokens)", options.config.block_size,
                options.config.gamma, static_cast<long long>(options.config.min_budget_tokens));
  }
  std::printf("\n  text: %s\n", text.c_str());
  std::printf("  prefill: %.1f ms (attention %.1f ms", st.prefill_ms, st.attention_ms);
  if (mode == runner::AttentionMode::kProxy) std::printf(" of which plan %.1f ms", st.plan_ms);
  std::printf(", everything else %.1f ms)\n", st.prefill_ms - st.attention_ms);
  std::printf("  decode: %zu tokens, %.1f tokens/s\n", g.tokens.size(), g.decode_tokens_per_s());
  std::printf("  density per layer:");
  for (double d : st.density) std::printf(" %.3f", d);
  std::printf(" (mean %.3f)\n", st.mean_density());
  if (o.model.json) {
    nlohmann::json j;
    j["text"] = text;
    j["tokens"] = g.tokens;
    j["prompt_tokens"] = ids.size();
    j["attention"] = runner::to_string(mode);
    j["prefill_ms"] = st.prefill_ms;
    j["attention_ms"] = st.attention_ms;
    j["plan_ms"] = st.plan_ms;
    j["layer_attention_ms"] = st.layer_attention_ms;
    j["decode_tok_s"] = g.decode_tokens_per_s();
    j["density"] = st.density;
    j["head_density"] = st.head_density;
    j["head_budget_blocks"] = st.head_budget;
    if (mode == runner::AttentionMode::kProxy) {
      nlohmann::json c;
      for (const ConfigField& f : config_fields())
        c[f.name] = get_config_field(options.config, f.name);
      j["config"] = c;
    }
    std::cout << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << std::endl;
  }
  return 0;
}

void add_model_commands(CLI::App& app, ModelCommands& cmds) {
  CLI::App* gen = app.add_subcommand("generate", "greedy generation with a Llama-family model");
  cmds.generate.model.add_to(*gen);
  gen->add_option("--prompt-file", cmds.generate.prompt_file, "the prompt as text")
      ->check(CLI::ExistingFile);
  gen->add_option("--prompt-ids", cmds.generate.prompt_ids,
                  "the prompt as token ids (whitespace-separated), BOS included if wanted")
      ->check(CLI::ExistingFile);
  gen->add_option_function<std::string>(
      "--max-new-tokens",
      [&cmds](const std::string& text) {
        cmds.generate.max_new_tokens = parse_int_flag("--max-new-tokens", text, 0, 1 << 20);
      },
      "tokens to generate at most, 0 .. 2^20 [" +
          std::to_string(cmds.generate.max_new_tokens) + "]");
  gen->add_option("--attention", cmds.generate.attention, "prefill attention: dense|proxy")
      ->check(CLI::IsMember({"dense", "proxy"}))
      ->capture_default_str();
  cmds.generate_app = gen;

  CLI::App* ev =
      app.add_subcommand("eval", "accuracy on eval/'s task prompts, dense and ProxyAttn");
  cmds.eval.model.add_to(*ev);
  ev->add_option("--tasks", cmds.eval.tasks_file, "task prompts, JSONL (eval/generate.py)")
      ->required()
      ->check(CLI::ExistingFile);
  ev->add_option_function<std::string>(
      "--limit",
      [&cmds](const std::string& text) {
        cmds.eval.limit = parse_int_flag("--limit", text, 0, std::numeric_limits<std::int64_t>::max());
      },
      "prompts per (task, length) cell; 0 = all [0]");
  ev->add_option("--attention", cmds.eval.attention, "comma-separated modes: dense,proxy")
      ->capture_default_str();
  ev->add_option("--out", cmds.eval.out_dir, "folder for eval.json, eval-outputs.jsonl, eval.png")
      ->capture_default_str();
  cmds.eval_app = ev;

  CLI::App* demo = app.add_subcommand(
      "demo", "the shipped model answers a long held-out prompt, dense then ProxyAttn");
  cmds.demo.model.add_to(*demo, shipped_model_dir(), demo_config());
  demo->add_option("--out", cmds.demo.out_dir, "folder for demo-blocks.png")->capture_default_str();
  demo->add_flag("--short", cmds.demo.short_form, "a short prompt (a quick smoke test)");
  demo->add_option_function<std::string>(
      "--repeats",
      [&cmds](const std::string& text) {
        cmds.demo.repeats = static_cast<int>(parse_int_flag("--repeats", text, 1, 100));
      },
      "prefills per mode for the times (medians), 1 .. 100 [" +
          std::to_string(cmds.demo.repeats) + "]");
  cmds.demo_app = demo;
}

int ModelCommands::run() const {
  if (generate_app != nullptr && generate_app->parsed()) return run_generate(generate);
  if (eval_app != nullptr && eval_app->parsed()) return run_eval(eval);
  if (demo_app != nullptr && demo_app->parsed()) return run_demo(demo);
  return -1;
}

}  // namespace proxyattn::cli
