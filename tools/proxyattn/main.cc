// tools/proxyattn/main.cc: the `proxyattn` command line (docs/SPEC.md section 5).
//   proxyattn bench  [flags]   dense and ProxyAttn timed on the same inputs
//   proxyattn check  [flags]   the backend against the double reference
//   proxyattn plan   [flags] [--png FILE] [--show-heads 0,1,2] [--density-png FILE]
// Human tables go to stdout, progress to stderr (only on a terminal); --json ends stdout with one
// JSON object.
#include <iostream>

#include "tools/proxyattn/cli.h"

int main(int argc, char** argv) {
  using proxyattn::cli::CommonOptions;
  CLI::App app{"proxyattn: ProxyAttn sparse attention for long-context prefill"};
  app.set_version_flag("--version", PROXYATTN_VERSION_STRING);
  app.require_subcommand(1);

  CommonOptions bench_opts, check_opts, plan_opts;
  int repeats = 1;
  std::string png, show_heads, density_png;
  CLI::App* bench = app.add_subcommand("bench", "time dense and ProxyAttn on the same inputs");
  bench_opts.add_to(*bench);
  bench->add_option("--repeats", repeats, "timed runs per stage (median)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  CLI::App* check = app.add_subcommand("check", "the backend against the reference (docs/SPEC.md section 4)");
  check_opts.add_to(*check);
  CLI::App* plan = app.add_subcommand("plan", "budgets and density per head, selected blocks");
  plan_opts.add_to(*plan);
  plan->add_option("--png", png, "write the selected blocks of --show-heads as a heatmap");
  plan->add_option("--show-heads", show_heads, "comma-separated heads for --png [0,1,2,3]");
  plan->add_option("--density-png", density_png, "write density per head as a bar chart");

  CLI11_PARSE(app, argc, argv);
  try {
    if (bench->parsed()) return proxyattn::cli::run_bench(bench_opts, repeats);
    if (check->parsed()) {
      check_opts.last_block_given = check->get_option("--last-block")->count() > 0;
      return proxyattn::cli::run_check(check_opts);
    }
    if (plan->parsed()) return proxyattn::cli::run_plan(plan_opts, png, show_heads, density_png);
  } catch (const proxyattn::Error& e) {
    std::cerr << "error: " << e.what() << std::endl;
    return 2;
  }
  return 0;
}
