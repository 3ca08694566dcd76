#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <thread>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/generation.h"
#include "policy/policy.h"
#include "server/engine_backend.h"
#include "server/gateway.h"
#include "server/worker_backend.h"

namespace airlock::cli {
namespace {

struct ServeArgs {
  std::vector<std::string> models;
  std::vector<std::string> aliases;
  std::string config;
  std::string host = "127.0.0.1";
  int port = 8080;
  int slots = 1;
  int threads = 0;
  int ctx = 0;
  std::string kv_type = "auto";
  bool no_batching = false;
  bool insecure_http = false;
  std::string require_signature;
  // Benchmarks only: load and run local models inside the gateway process (the layout before
  // privilege separation), to measure what the worker process costs.
  bool in_process_models = false;
};

std::string Stem(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  if (name.size() > 5 && name.substr(name.size() - 5) == ".gguf") name.resize(name.size() - 5);
  return name;
}

int RunServe(const ServeArgs& a) {
  // Signals are handled by a watcher thread (sigwait), so Stop() is never called from a handler.
  // Blocked first, before any thread exists (model workers' reader threads, the audit log's):
  // a thread created with them unblocked would take a SIGTERM's default action and kill the
  // process without a drain, without settling requests in flight and without the audit log's
  // final checkpoint. One arriving while models load is handled once serving starts.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  sigaddset(&set, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  policy::Policy pol;
  if (!a.config.empty()) {
    auto p = policy::LoadPolicy(a.config);
    if (!p) {
      std::fprintf(stderr, "airlock serve: %s\n", p.error().message().c_str());
      return kExitError;
    }
    pol = std::move(*p);
  }
  if (a.aliases.size() > a.models.size()) {
    std::fprintf(stderr, "airlock serve: more --alias values than models\n");
    return kExitError;
  }
  // Models named on the command line are served under their file stem (or --alias).
  for (std::size_t i = 0; i < a.models.size(); ++i) {
    std::string name = i < a.aliases.size() ? a.aliases[i] : Stem(a.models[i]);
    pol.local_models.push_back({name, a.models[i], ""});
  }
  std::map<std::string, std::shared_ptr<server::ModelBackend>> backends;
  // Each local model runs in its own worker process (server/worker_backend.h): this process,
  // which holds the keys, never parses a model file.
  std::error_code ec;
  const std::string self = std::filesystem::read_symlink("/proc/self/exe", ec).string();
  if (!pol.local_models.empty() && !a.in_process_models && (ec || self.empty())) {
    std::fprintf(stderr, "airlock serve: cannot find this program to start model workers\n");
    return kExitError;
  }
  if (a.in_process_models && !pol.local_models.empty())
    std::fprintf(stderr,
                 "airlock serve: WARNING: --in-process-models: local models are parsed and run "
                 "inside the process that holds the keys (for benchmarks only)\n");
  for (const auto& m : pol.local_models) {
    server::EngineBackendOptions eo;
    eo.name = m.name;
    eo.slots = a.slots;
    eo.threads = a.threads;
    eo.ctx = a.ctx;
    eo.kv_type = KvTypeFromFlag(a.kv_type);
    eo.batched = !a.no_batching;
    // The model's own key, else --require-signature, else the policy's server-wide default.
    const std::string& key = !m.require_signature.empty()   ? m.require_signature
                             : !a.require_signature.empty() ? a.require_signature
                                                            : pol.server.require_signature;
    Result<core::PinnedFile> checked = OpenCheckedModel(m.path, key);
    if (!checked) {
      std::fprintf(stderr, "airlock serve: %s\n", checked.error().message().c_str());
      return checked.error().code() == StatusCode::kPermissionDenied ? kExitFailed : kExitError;
    }
    Result<std::shared_ptr<server::ModelBackend>> backend = Unavailable("");
    if (a.in_process_models) {
      backend = server::LoadEngineBackend(m.path, eo, checked->fd());
    } else {
      server::WorkerBackendOptions wo;
      wo.program = self;
      wo.gguf_path = m.path;
      wo.engine = eo;
      // Opened and checked again before each start of the worker (the first one included), and
      // handed to it as a descriptor: a model replaced on disk after a check (then a worker
      // crash, or a kill) is never loaded unsigned, and a file written in place retires the
      // worker before its next request.
      // The first start takes the file checked just above (with a signature, a sealed copy of
      // the model in memory: checking it again would hold two copies at once).
      auto checked_first = std::make_shared<std::optional<core::PinnedFile>>(std::move(*checked));
      wo.open_model = [path = m.path, key, checked_first]() -> Result<core::PinnedFile> {
        if (checked_first->has_value()) {
          core::PinnedFile first = std::move(**checked_first);
          checked_first->reset();
          return first;
        }
        return OpenCheckedModel(path, key);
      };
      backend = server::StartWorkerBackend(wo);
    }
    if (!backend) {
      std::fprintf(stderr, "airlock serve: cannot load %s: %s\n", m.path.c_str(),
                   backend.error().message().c_str());
      return kExitError;
    }
    const pid_t worker = server::ModelWorkerPid(**backend);
    std::fprintf(stderr, "airlock serve: loaded %s as '%s' (%d slot%s%s)\n", m.path.c_str(),
                 m.name.c_str(), a.slots, a.slots == 1 ? "" : "s",
                 worker > 0 ? (", worker process " + std::to_string(worker)).c_str() : "");
    backends[m.name] = std::move(*backend);
  }
  if (pol.upstreams.empty() && pol.local_models.empty())
    std::fprintf(stderr,
                 "airlock serve: warning: no upstreams or models configured; every "
                 "completion request will answer 404\n");

  server::GatewayOptions options;
  options.host = a.host;
  options.port = a.port;
  options.policy = std::move(pol);
  options.local_backends = std::move(backends);
  options.insecure_http = a.insecure_http;
  auto gw = server::Gateway::Create(std::move(options));
  if (!gw) {
    std::fprintf(stderr, "airlock serve: %s\n", gw.error().message().c_str());
    return gw.error().code() == StatusCode::kPermissionDenied ? kExitFailed : kExitError;
  }
  if (Status s = (*gw)->Start(); !s.ok()) {
    std::fprintf(stderr, "airlock serve: %s\n", s.message().c_str());
    return kExitError;
  }
  bool tls = (*gw)->tls();
  if (!tls && !server::IsLoopbackHost(a.host))
    std::fprintf(stderr,
                 "airlock serve: WARNING: serving plain HTTP on %s (--insecure-http): API keys "
                 "and prompts cross the network readable\n",
                 a.host.c_str());
  std::printf("airlock serve: listening on %s://%s:%d\n", tls ? "https" : "http", a.host.c_str(),
              (*gw)->port());
  std::fflush(stdout);
  server::Gateway* g = gw->get();
  // SIGHUP reloads the TLS certificate; SIGTERM and SIGINT drain (finish or cancel what is in
  // flight within [server] drain_timeout_s, settle and audit it) and stop.
  std::thread watcher([set, g] {
    for (;;) {
      int sig = 0;
      if (sigwait(&set, &sig) != 0) continue;
      if (sig == SIGHUP) {
        if (Status s = g->ReloadTls(); !s.ok())
          std::fprintf(stderr,
                       "airlock serve: TLS reload failed, keeping the old certificate: %s\n",
                       s.message().c_str());
        else if (g->tls())
          std::fprintf(stderr, "airlock serve: TLS certificate reloaded\n");
        continue;
      }
      if (sig == SIGUSR1) return;  // woken by the main thread: the server stopped on its own
      std::fprintf(stderr, "airlock serve: draining\n");
      g->Drain();
      return;
    }
  });
  (*gw)->Wait();
  // The watcher may still be inside Stop(), or still waiting if the server stopped on its own:
  // wake it (the signal is blocked, so it only ends sigwait) and join it before the gateway is
  // destroyed. (A detached watcher raced with the destructor; found by ThreadSanitizer.)
  pthread_kill(watcher.native_handle(), SIGUSR1);
  watcher.join();
  std::fprintf(stderr, "airlock serve: stopped\n");
  return 0;
}

}  // namespace

void AddServeCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve",
      "OpenAI-compatible server and governance gateway (keys, budgets, redaction, "
      "jurisdiction routing, tamper-evident audit)");
  cmd->footer(
      "Endpoints: POST /v1/chat/completions, POST /v1/completions, GET /v1/models,\n"
      "GET /v1/models/{id}, GET /health, GET /ready, GET /metrics. Local models implement n,\n"
      "logprobs, response_format (JSON schema) and tools (docs/structured-output.md).\n"
      "Binds loopback by default; a non-loopback --host needs API keys (airlock keys create)\n"
      "and TLS ([server] tls_cert/tls_key, reloaded on SIGHUP) unless\n"
      "--insecure-http. SIGTERM drains: in-flight requests finish within [server]\n"
      "drain_timeout_s, the rest are cancelled, all are audited, exit 0. The policy file is "
      "documented in docs/policy.example.toml.\n"
      "Audit: the first start creates the checkpoint signing key when absent ([audit]\n"
      "signing_key, default <audit path>.key, with .pub beside it) and prints its public key;\n"
      "checkpoints go to the anchors the policy names (docs/audit.md).\n"
      "Local models: each runs in its own worker process, confined like `airlock run` (reads the\n"
      "model only, writes nothing, no sockets, no exec) and holding none of the keys; one that\n"
      "dies or misbehaves fails its requests with 502 and is restarted on the next request. A\n"
      "worker that cannot be confined stops serve (docs/security.md).\n"
      "Exit codes: 0 stopped cleanly; 1 refused (non-loopback without keys or TLS); 2 local\n"
      "models requested but the inference engine is not in this build; 3 usage or startup\n"
      "error.\n"
      "Examples:\n"
      "  airlock serve --config policy.toml --port 8080\n"
      "  curl -s localhost:8080/v1/chat/completions -H 'Authorization: Bearer ak_...' \\\n"
      "       -d "
      "'{\"model\":\"gpt-4o-mini\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}'\n");
  cmd->add_option("models", args->models, "Local GGUF models to serve (under their file stem)");
  cmd->add_option("--slots", args->slots,
                  "Concurrent generations per local model, decoded together in batched steps "
                  "(further requests queue FIFO for a slot)")
      ->capture_default_str();
  cmd->add_option(
         "-t,--threads", args->threads,
         "Threads of each local model's step pool, shared by its slots (0: all cores); per "
         "slot with --no-batching")
      ->capture_default_str();
  cmd->add_flag("--no-batching", args->no_batching,
                "Decode each slot on its own (threads per slot, 0: cores / slots) instead of all "
                "slots in one batched step; can be faster with 2 slots on 2 cores "
                "(docs/performance.md)");
  cmd->add_option(
      "--require-signature", args->require_signature,
      "Public key (PEM): refuse to serve a local model whose signature does not verify (a "
      "[[local_models]] require_signature key takes precedence; default: [server] "
      "require_signature)");
  AddKvTypeOption(cmd, &args->kv_type);
  cmd->add_option("--ctx", args->ctx,
                  "Context per slot, up to the model's training context; refused at start when "
                  "the slots' KV caches do not fit the memory available (0: min(training "
                  "context, 4096))")
      ->capture_default_str();
  cmd->add_option("--alias", args->aliases, "Name to serve each local model under");
  cmd->add_option("-c,--config", args->config, "Policy file (TOML)");
  cmd->add_option("--host", args->host, "Address to bind")->capture_default_str();
  cmd->add_flag("--insecure-http", args->insecure_http,
                "Allow a non-loopback --host without TLS (keys and prompts travel readable; "
                "printed as a warning and exported as the metric airlock_insecure_http)");
  cmd->add_flag("--in-process-models", args->in_process_models)
      ->group("");  // hidden: benchmarks compare it with the worker process
  cmd->add_option("--port", args->port, "Port to bind (0 picks a free one)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->callback([args, exit_code] { *exit_code = RunServe(*args); });
}

}  // namespace airlock::cli
