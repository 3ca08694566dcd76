// The `airlock` sub-commands. Each Add*Command registers one sub-command on `app`; when it runs
// it stores its process exit code in `*exit_code`. One file per command keeps main.cc a list.
#pragma once

#include <cstddef>

namespace CLI {
class App;
}

namespace airlock::cli {

// The most text a command reads whole from a file or a stream (tokenize, perplexity): an endless
// pipe is refused at this size instead of filling memory.
inline constexpr std::size_t kMaxTextInputBytes = std::size_t{256} << 20;

void AddScanCommand(CLI::App& app, int* exit_code);        // scan_command.cc
void AddProbeCommand(CLI::App& app, int* exit_code);       // probe_command.cc
void AddAssessCommand(CLI::App& app, int* exit_code);      // assess_command.cc
void AddKeygenCommand(CLI::App& app, int* exit_code);      // sign_command.cc
void AddSignCommand(CLI::App& app, int* exit_code);        // sign_command.cc
void AddVerifyCommand(CLI::App& app, int* exit_code);      // sign_command.cc
void AddServeCommand(CLI::App& app, int* exit_code);       // serve_command.cc
void AddKeysCommand(CLI::App& app, int* exit_code);        // keys_command.cc
void AddAuditCommand(CLI::App& app, int* exit_code);       // audit_command.cc
void AddInspectCommand(CLI::App& app, int* exit_code);     // inspect_command.cc
void AddPerplexityCommand(CLI::App& app, int* exit_code);  // perplexity_command.cc
void AddTokenizeCommand(CLI::App& app, int* exit_code);    // tokenize_command.cc
void AddRunCommand(CLI::App& app, int* exit_code);         // run_command.cc
void AddChatCommand(CLI::App& app, int* exit_code);        // chat_command.cc
void AddUpstreamCommand(CLI::App& app, int* exit_code);    // upstream_command.cc
// Hidden: the process `serve` runs each local model in (model_worker_command.cc).
void AddModelWorkerCommand(CLI::App& app, int* exit_code);

}  // namespace airlock::cli
