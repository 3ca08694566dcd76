#include "cli/sandboxing.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include "core/file.h"
#include "sandbox/sandbox.h"

namespace airlock::cli {
namespace {

bool g_no_sandbox = false;  // one sub-command runs per process

// An output file the confined child writes into a private staging folder beside it; the
// unconfined parent moves it into place when the child has exited.
struct StagedOutput {
  std::string target;  // as the user named it
  std::string dir;     // <target's folder>/.<name>.airlock-XXXXXX, mode 0700
  std::string staged;  // dir/<name>
};
std::vector<StagedOutput> g_staged;

// How an output is granted: staged (a regular file, or one still to be created), in place (a
// device, FIFO or terminal such as -o /dev/stdout: that file alone, sandbox.h), or not at all (a
// folder: the command's own write fails on it, as it would unconfined).
// A disk or other device is not granted at all: WriteFileAtomic refuses it.
enum class OutputKind { kStaged, kInPlace, kNone };
OutputKind KindOf(const std::string& path) {
  switch (core::ClassifyOutput(path)) {
    case core::OutputTarget::kReplace:
      return OutputKind::kStaged;
    case core::OutputTarget::kStdStream:  // written through the descriptor: no grant needed
    case core::OutputTarget::kFolder:
    case core::OutputTarget::kRefused:
      return OutputKind::kNone;
    case core::OutputTarget::kInPlace:
      return OutputKind::kInPlace;
  }
  return OutputKind::kNone;
}

bool Stage(const char* command, const std::string& target, StagedOutput* out) {
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(target, ec).lexically_normal();
  if (ec || !abs.has_filename()) {
    std::fprintf(stderr, "airlock %s: %s does not name a file\n", command, target.c_str());
    return false;
  }
  std::string pattern =
      (abs.parent_path() / ("." + abs.filename().string() + ".airlock-XXXXXX")).string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    std::fprintf(stderr, "airlock %s: cannot create a staging folder beside %s: %s\n", command,
                 target.c_str(), std::strerror(errno));
    return false;
  }
  *out = {target, pattern, pattern + "/" + abs.filename().string()};
  return true;
}

void RemoveStaging() {
  for (const StagedOutput& s : g_staged) {
    std::error_code ec;
    std::filesystem::remove_all(s.dir, ec);
  }
}

volatile pid_t g_child = 0;
void ForwardSignal(int sig) {
  if (g_child > 0) ::kill(g_child, sig);
}

// The unconfined parent: waits for the confined child, moves each output it completed into place
// (a regular file, not a link: rename is atomic, as the command's own write would have been),
// removes the staging folders and ends as the child did (its exit code, or its signal).
[[noreturn]] void CommitOutputsAndExit(const char* command, pid_t child) {
  g_child = child;
  for (int sig : {SIGINT, SIGTERM, SIGHUP, SIGQUIT}) ::signal(sig, ForwardSignal);
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 3;
  for (const StagedOutput& s : g_staged) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(std::filesystem::symlink_status(s.staged, ec))) continue;
    if (::rename(s.staged.c_str(), s.target.c_str()) != 0) {
      std::fprintf(stderr, "airlock %s: cannot move the output into place at %s: %s\n", command,
                   s.target.c_str(), std::strerror(errno));
      if (code == 0) code = 3;
    }
  }
  RemoveStaging();
  if (WIFSIGNALED(status)) {
    ::signal(WTERMSIG(status), SIG_DFL);
    ::raise(WTERMSIG(status));
  }
  std::fflush(nullptr);
  ::_exit(code);
}

}  // namespace

const std::string& OutputPath(const std::string& output) {
  for (const StagedOutput& s : g_staged)
    if (s.target == output) return s.staged;
  return output;
}

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
  // Outputs are written in a private staging folder each, and only there: the grant is that
  // folder, not the output's own folder (which may be $HOME, where a write to ~/.bashrc would
  // outlive the command). The rename into place needs the output folder's create and remove
  // rights, so it is done by an unconfined parent process that parses nothing.
  for (const std::string& out : outputs) {
    if (out.empty()) continue;
    OutputKind kind = KindOf(out);
    if (kind == OutputKind::kNone) continue;
    if (kind == OutputKind::kInPlace) {
      policy.write_paths.push_back(out);
      continue;
    }
    StagedOutput staged;
    if (!Stage(command, out, &staged)) {
      RemoveStaging();
      g_staged.clear();
      return false;
    }
    g_staged.push_back(staged);
    policy.write_paths.push_back(staged.staged);
  }
  if (!g_staged.empty()) {
    std::fflush(nullptr);  // nothing buffered may be written twice
    pid_t child = ::fork();
    if (child < 0) {
      std::fprintf(stderr, "airlock %s: cannot start the confined process: %s\n", command,
                   std::strerror(errno));
      RemoveStaging();
      g_staged.clear();
      return false;
    }
    if (child > 0) CommitOutputsAndExit(command, child);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // nothing commits for an orphan: stop with the parent
  }
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
