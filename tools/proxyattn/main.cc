// tools/proxyattn/main.cc: the `proxyattn` command line (docs/SPEC.md section 5).
//   proxyattn bench  [flags]   dense and ProxyAttn timed on the same inputs
//   proxyattn check  [flags]   the backend against the double reference
//   proxyattn plan   [flags] [--png FILE] [--show-heads 0,1,2] [--density-png FILE]
//   proxyattn generate / eval / demo   a Llama-family model end to end (tools/proxyattn/model_cmds.h)
// Human tables go to stdout, progress to stderr (only on a terminal); --json ends stdout with one
// JSON object. The subcommands are registered in tools/proxyattn/app.cc.
#include "tools/proxyattn/app.h"

int main(int argc, char** argv) { return proxyattn::cli::run_main(argc, argv); }
