// `airlock __model-worker`: the process `airlock serve` runs each local model in (see
// server/worker_backend.h). Hidden from --help: only serve starts it, with the socket to the
// gateway as --fd and the model file the gateway opened and checked as --model-fd (the path in
// --model only names it). Before it reads a byte of the model it closes every other inherited
// descriptor, keeps only the allowed environment variables, and confines itself: no exec, no
// process creation, no new sockets, reads of system libraries only (not even the model's path:
// what it maps is the checked descriptor), no writes.
#include <sys/syscall.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "engine/session.h"
#include "sandbox/sandbox.h"
#include "server/worker_backend.h"

namespace airlock::cli {
namespace {

struct WorkerArgs {
  int fd = -1;
  int model_fd = -1;
  std::string model;
  std::string name;
  int slots = 1;
  int threads = 0;
  int ctx = 0;
  std::string kv_type = "auto";
  bool no_batching = false;
};

// Drops every variable serve did not mean to pass (serve already starts the worker with only
// these; this holds when the worker is started some other way).
void ScrubEnvironment() {
  std::vector<std::pair<std::string, std::string>> keep;
  for (const char* name : server::kWorkerEnvironment)
    if (const char* v = std::getenv(name)) keep.emplace_back(name, v);
  ::clearenv();
  for (const auto& [name, value] : keep) ::setenv(name.c_str(), value.c_str(), 1);
}

int RunWorker(const WorkerArgs& a) {
  if (a.fd < 3 || a.model_fd < 3 || a.model_fd == a.fd) {
    std::fprintf(stderr, "airlock __model-worker: started by airlock serve only\n");
    return kExitError;
  }
  // Only stdin, stdout, stderr, the socket and the model stay open: nothing the gateway leaked by
  // mistake.
  const unsigned low = static_cast<unsigned>(std::min(a.fd, a.model_fd));
  const unsigned high = static_cast<unsigned>(std::max(a.fd, a.model_fd));
  if (low > 3) ::syscall(SYS_close_range, 3u, low - 1, 0u);
  if (high > low + 1) ::syscall(SYS_close_range, low + 1, high - 1, 0u);
  ::syscall(SYS_close_range, high + 1, UINT_MAX, 0u);
  ScrubEnvironment();
  sandbox::Policy policy;  // no read path at all: the model is the inherited descriptor
  auto applied = sandbox::Apply(policy);
  if (!applied) {
    std::string message = "cannot sandbox the model worker: " + applied.error().message();
    std::fprintf(stderr, "airlock serve: %s\n", message.c_str());
    server::ReportModelWorkerFailure(a.fd, message);
    return kExitError;
  }
  for (const std::string& w : applied->warnings)
    std::fprintf(stderr, "airlock serve: warning: model worker sandbox: %s\n", w.c_str());
  if (const char* attempts = std::getenv(sandbox::kTestAttemptVariable)) {
    for (const std::string& line : sandbox::RunTestAttempts(attempts))
      std::fprintf(stderr, "%s\n", line.c_str());
  }
  server::EngineBackendOptions eo;
  eo.name = a.name;
  eo.slots = a.slots;
  eo.threads = a.threads;
  eo.ctx = a.ctx;
  eo.kv_type = engine::ParseKvCacheType(a.kv_type).value_or(engine::KvCacheType::kAuto);
  eo.batched = !a.no_batching;
  return server::RunModelWorker(a.fd, a.model, a.model_fd, eo);
}

}  // namespace

void AddModelWorkerCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<WorkerArgs>();
  CLI::App* cmd = app.add_subcommand("__model-worker", "Model worker of airlock serve (internal)");
  cmd->group("");  // hidden
  cmd->add_option("--fd", args->fd)->required();
  cmd->add_option("--model", args->model)->required();
  cmd->add_option("--model-fd", args->model_fd)->required();
  cmd->add_option("--name", args->name);
  cmd->add_option("--slots", args->slots);
  cmd->add_option("--threads", args->threads);
  cmd->add_option("--ctx", args->ctx);
  cmd->add_option("--kv-type", args->kv_type);
  cmd->add_flag("--no-batching", args->no_batching);
  cmd->callback([args, exit_code] { *exit_code = RunWorker(*args); });
}

}  // namespace airlock::cli
