// airlock: vet, verify, run and govern open-weight models. This file only wires sub-commands;
// each lives in its own file under src/cli/.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sandboxing.h"
#include "core/version.h"

int main(int argc, char** argv) {
  CLI::App app{"airlock: adopt open-weight AI models without having to trust them"};
  app.set_version_flag("--version", std::string("airlock ") + airlock::kVersion);
  app.require_subcommand(1);
  int exit_code = 0;
  airlock::cli::AddScanCommand(app, &exit_code);
  airlock::cli::AddProbeCommand(app, &exit_code);
  airlock::cli::AddAssessCommand(app, &exit_code);
  airlock::cli::AddKeygenCommand(app, &exit_code);
  airlock::cli::AddSignCommand(app, &exit_code);
  airlock::cli::AddVerifyCommand(app, &exit_code);
  airlock::cli::AddServeCommand(app, &exit_code);
  airlock::cli::AddKeysCommand(app, &exit_code);
  airlock::cli::AddAuditCommand(app, &exit_code);
  airlock::cli::AddInspectCommand(app, &exit_code);
  airlock::cli::AddPerplexityCommand(app, &exit_code);
  airlock::cli::AddTokenizeCommand(app, &exit_code);
  airlock::cli::AddRunCommand(app, &exit_code);
  airlock::cli::AddChatCommand(app, &exit_code);
  airlock::cli::AddUpstreamCommand(app, &exit_code);
  airlock::cli::AddModelWorkerCommand(app, &exit_code);
  airlock::cli::AddSandboxFlags(app);  // after the commands it confines
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0
               ? airlock::cli::kExitOk
               : airlock::cli::kExitError;  // usage errors share the scanner's "tool error" code
  }
  return exit_code;
}
