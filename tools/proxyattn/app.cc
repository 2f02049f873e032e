// tools/proxyattn/app.cc: the `proxyattn` command line: every subcommand's flags, the run of the
// parsed one, and the one place that turns any failure into a message and exit code 2.
#include "tools/proxyattn/app.h"

#include <exception>
#include <iostream>
#include <new>
#include <string>

namespace proxyattn::cli {

void build_app(CLI::App& app, Commands& c) {
  app.set_version_flag("--version", PROXYATTN_VERSION_STRING);
  app.require_subcommand(1);

  c.bench = app.add_subcommand("bench", "time dense and ProxyAttn on the same inputs");
  c.bench_opts.add_to(*c.bench);
  c.bench->add_option_function<std::string>(
      "--repeats",
      [&c](const std::string& text) {
        c.repeats = static_cast<int>(parse_int_flag("--repeats", text, 1, 1000000));
      },
      "timed runs per stage (median) [1]");
  c.check = app.add_subcommand("check",
                               "the backend against the reference (docs/SPEC.md section 4)");
  c.check_opts.add_to(*c.check);
  c.plan = app.add_subcommand("plan", "budgets and density per head, selected blocks");
  c.plan_opts.add_to(*c.plan);
  c.plan->add_option("--png", c.png, "write the selected blocks of --show-heads as a heatmap");
  c.plan->add_option("--show-heads", c.show_heads, "comma-separated heads for --png [0,1,2,3]");
  c.plan->add_option("--density-png", c.density_png, "write density per head as a bar chart");

  add_model_commands(app, c.model_cmds);
}

int run_parsed(Commands& c) {
  if (const int rc = c.model_cmds.run(); rc >= 0) return rc;
  if (c.bench->parsed()) return run_bench(c.bench_opts, c.repeats);
  if (c.check->parsed()) {
    c.check_opts.last_block_given = c.check->get_option("--last-block")->count() > 0;
    return run_check(c.check_opts);
  }
  if (c.plan->parsed()) {
    if (c.plan->get_option("--show-heads")->count() > 0 && c.show_heads.empty()) {
      fail("--show-heads = '', expected comma-separated head indices");
    }
    return run_plan(c.plan_opts, c.png, c.show_heads, c.density_png);
  }
  return 0;
}

namespace {

// One line on stderr; the text is escaped and cut so no input can forge lines or flood it.
// Backslashes stay: the library's own messages already escape what they quote.
int report(const std::string& what) {
  std::cout.flush();
  std::string text = what;
  if (text.rfind("proxyattn: ", 0) != 0) text = "proxyattn: " + text;
  std::cerr << "error: " << printable(text, 1000, /*escape_backslash=*/false) << std::endl;
  return 2;
}

}  // namespace

int run_main(int argc, char** argv) {
  try {
    CLI::App app{"proxyattn: ProxyAttn sparse attention for long-context prefill"};
    Commands c;
    build_app(app, c);
    try {
      app.parse(argc, argv);
    } catch (const CLI::CallForHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForAllHelp& e) {
      return app.exit(e);
    } catch (const CLI::CallForVersion& e) {
      return app.exit(e);
    } catch (const CLI::ParseError& e) {
      return report(e.what() + std::string(" (run with --help for the flags)"));
    }
    return run_parsed(c);
  } catch (const std::bad_alloc&) {
    return report("out of memory (the inputs or the flags ask for more than the machine has)");
  } catch (const std::exception& e) {
    return report(e.what());
  } catch (...) {
    return report("unknown failure");
  }
}

}  // namespace proxyattn::cli
