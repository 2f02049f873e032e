// tools/proxyattn/app.h: the whole `proxyattn` command line as a function of argv, so that the
// parser can run alone (fuzz/cli_args_fuzz.cc) and main() is one call.
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "tools/proxyattn/cli.h"
#include "tools/proxyattn/model_cmds.h"

namespace proxyattn::cli {

/// \brief Every subcommand's options, filled by parsing.
struct Commands {
  CommonOptions bench_opts, check_opts, plan_opts;
  int repeats = 1;
  std::string png, show_heads, density_png;
  CLI::App* bench = nullptr;
  CLI::App* check = nullptr;
  CLI::App* plan = nullptr;
  ModelCommands model_cmds;
};

/// \brief Builds the whole command line (all subcommands) into app; c must outlive parsing.
void build_app(CLI::App& app, Commands& c);

/// \brief Runs the parsed subcommand; returns its exit code.
int run_parsed(Commands& c);

/// \brief Parses argv and runs the command. Any exception (a parse error, proxyattn::Error,
/// std::bad_alloc, ...) becomes one escaped line on stderr and exit code 2; --help and --version
/// exit 0.
int run_main(int argc, char** argv);

}  // namespace proxyattn::cli
