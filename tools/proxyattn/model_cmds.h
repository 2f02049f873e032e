// tools/proxyattn/model_cmds.h: the model commands of the proxyattn command line.
//   proxyattn generate --model DIR (--prompt-file FILE | --prompt-ids FILE) [--max-new-tokens N]
//                      [--attention dense|proxy] [config flags] [--threads N] [--json]
//   proxyattn eval     --model DIR --tasks FILE.jsonl [--limit N] [--attention dense,proxy]
//                      [config flags] [--out DIR] [--json]
//   proxyattn demo     [--out DIR] [--model DIR] [--short] [--repeats N] [config flags]
// Results go to stdout, progress to stderr; --json ends stdout with one JSON object.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "proxyattn/config.h"
#include "proxyattn/runner/runner.h"

namespace proxyattn::cli {

/// \brief Flags the model commands share: the model directory, the config flags (docs/SPEC.md
/// section 2, the same flags as bench/check/plan) and threads.
struct ModelOptions {
  std::string model_dir;
  std::vector<std::pair<std::string, std::string>> config_text;  // (field, text) as given
  int threads = 0;
  bool json = false;

  /// \brief Adds --model (required unless model_default is non-empty), the config flags (their
  /// help showing defaults), --threads and --json.
  void add_to(CLI::App& app, const std::string& model_default = "",
              const Config& defaults = Config{});
  /// \brief defaults with the given config flags applied, validated.
  Config config(Config defaults = Config{}) const;
  /// \brief The forward's options for one attention mode.
  runner::RunOptions run_options(runner::AttentionMode mode,
                                 const Config& defaults = Config{}) const;
};

struct GenerateOptions {
  ModelOptions model;
  std::string prompt_file, prompt_ids, attention = "proxy";
  std::int64_t max_new_tokens = 32;
};

struct EvalOptions {
  ModelOptions model;
  std::string tasks_file, attention = "dense,proxy", out_dir = ".";
  std::int64_t limit = 0;  // prompts per (task, length) cell; 0 = all
};

struct DemoOptions {
  ModelOptions model;
  std::string out_dir = ".";
  bool short_form = false;  // a shorter prompt, for smoke tests
  int repeats = 3;          // prefills per mode for the times (medians)
};

int run_generate(const GenerateOptions& o);
int run_eval(const EvalOptions& o);
int run_demo(const DemoOptions& o);

/// \brief The parsed model command, run by run() after CLI parsing.
struct ModelCommands {
  GenerateOptions generate;
  EvalOptions eval;
  DemoOptions demo;
  CLI::App* generate_app = nullptr;
  CLI::App* eval_app = nullptr;
  CLI::App* demo_app = nullptr;
  /// \brief Runs the parsed subcommand and returns its exit code, or -1 when none of the model
  /// commands was parsed.
  int run() const;
};

/// \brief Registers generate, eval and demo as subcommands of app. cmds must outlive parsing.
void add_model_commands(CLI::App& app, ModelCommands& cmds);

/// \brief The demo's ProxyAttn config: block 64, stride 8, gamma 0.85, min budget 256 tokens.
Config demo_config();

/// \brief The model shipped with the sources (models/pa-tiny-8k): the relative path when it
/// exists there, else the source tree's copy.
std::string shipped_model_dir();

/// \brief Progress on stderr when it is a terminal (one line, rewritten in place).
void model_progress(const std::string& message);

/// \brief One warning on stderr (the first time only) when a run needs more positions than the
/// model's max_position_embeddings: it runs, but outside the context the model was trained for.
void warn_beyond_context(const runner::Model& model, std::int64_t positions);

}  // namespace proxyattn::cli
