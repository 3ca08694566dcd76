#include "cli/sandboxing.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>

#include "sandbox/sandbox.h"

namespace airlock::cli {
namespace {

bool g_no_sandbox = false;  // one sub-command runs per process

}  // namespace

void AddSandboxFlags(CLI::App& app) {
  const std::set<std::string> confined = {"scan", "inspect",    "tokenize", "run",
                                          "chat", "perplexity", "verify"};
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (!confined.contains(sub->get_name())) continue;
    sub->add_flag("--no-sandbox", g_no_sandbox,
                  "Do not confine this command (no seccomp filter, no Landlock rules; see "
                  "docs/security.md)");
  }
}

bool EnterSandbox(const char* command, const std::vector<std::string>& inputs,
                  const std::vector<std::string>& outputs) {
  if (g_no_sandbox) {
    std::fprintf(stderr,
                 "airlock %s: warning: --no-sandbox: a parser bug triggered by the model runs with "
                 "all of this user's rights\n",
                 command);
    return true;
  }
  sandbox::Policy policy;
  policy.write_paths = outputs;
  for (const std::string& in : inputs) {
    if (in.empty()) continue;
    policy.read_paths.push_back(in);
    // snapshots/<revision>/ links its files to ../../blobs/<hash>.
    std::error_code ec;
    std::filesystem::path p = std::filesystem::absolute(in, ec).lexically_normal();
    if (!p.has_filename()) p = p.parent_path();
    if (std::filesystem::is_directory(p, ec) && p.parent_path().filename() == "snapshots")
      policy.read_paths.push_back((p.parent_path().parent_path() / "blobs").string());
  }
  auto applied = sandbox::Apply(policy);
  if (!applied.has_value()) {
    std::fprintf(stderr,
                 "airlock %s: cannot sandbox this command: %s (--no-sandbox runs it unconfined)\n",
                 command, applied.error().message().c_str());
    return false;
  }
  for (const std::string& w : applied->warnings)
    std::fprintf(stderr, "airlock %s: warning: sandbox: %s\n", command, w.c_str());
  if (const char* attempts = std::getenv(sandbox::kTestAttemptVariable)) {
    for (const std::string& line : sandbox::RunTestAttempts(attempts))
      std::fprintf(stderr, "%s\n", line.c_str());
  }
  return true;
}

}  // namespace airlock::cli
