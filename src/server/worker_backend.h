// Privilege separation for local models: a ModelBackend whose model lives in a separate worker
// process, so that a bug a hostile GGUF file triggers (loader, tokenizer, chat template, engine)
// runs without the gateway's secrets (upstream API keys, the key database, the audit signing key).
//
// The gateway side (StartWorkerBackend) starts `<program> __model-worker --fd 3 ...` with
// posix_spawn (a fresh exec: none of the gateway's memory), an environment holding only the test
// and sanitizer variables (kWorkerEnvironment), stdin on /dev/null, stdout on stderr, its own
// process group (a terminal's Ctrl-C reaches the gateway, which drains, not the worker), and one
// end of a socketpair as fd 3, and the model file, opened (and its signature checked) by the
// gateway, as fd 4. The worker closes every other descriptor, confines itself with the sandbox
// module (no exec, no process creation, no new sockets; Landlock: reads system libraries only, no
// path of the model, writes nothing) before it reads a byte of the model, maps fd 4 into an
// EngineBackend and answers over the socket (server/internal/worker_protocol.h).
//
// Everything the worker sends is untrusted: frames are bounded, fields validated, each request's
// text capped, and a worker that breaks the protocol, stays silent past `stall_timeout_s` while
// requests wait, or dies is killed and reaped; the requests it held fail with kUnavailable (the
// gateway answers 502 and audits them) and the next request starts a new worker.
// Thread-safety: as ModelBackend (Generate from many threads; they share one worker, whose engine
// batches them).
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>

#include "core/file.h"
#include "core/status.h"
#include "server/engine_backend.h"
#include "server/model_backend.h"

namespace airlock::server {

struct WorkerBackendOptions {
  std::string program;    // the airlock executable (serve passes /proc/self/exe's target)
  std::string gguf_path;  // names the model; the worker maps the descriptor it is given
  EngineBackendOptions engine;
  int start_timeout_s = 300;  // until the worker has loaded the model and said hello
  // A worker with requests in flight that sends no frame at all for this long is taken as hung.
  int stall_timeout_s = 600;
  // Opens the model before every start of a worker, the first and each restart (serve: with its
  // signature check through the descriptor, cli::OpenCheckedModel). The worker inherits this
  // descriptor and maps it, never opening a path, so what runs is what was checked; a worker
  // whose file is written in place afterwards (core::PinnedFile::Unchanged, checked before each
  // request) is retired and the next start opens and checks the file again. A failure refuses
  // the start (kUnavailable with its message). Unset: gguf_path is opened without a check.
  std::function<Result<core::PinnedFile>()> open_model;
};

// Environment variables a worker inherits (all others are dropped): the sandbox test hook, the
// hostile-worker test hook, and sanitizer options.
inline constexpr const char* kWorkerEnvironment[] = {"AIRLOCK_TEST_SANDBOX_ATTEMPT",
                                                     "AIRLOCK_TEST_MODEL_WORKER",
                                                     "ASAN_OPTIONS",
                                                     "UBSAN_OPTIONS",
                                                     "LSAN_OPTIONS",
                                                     "TSAN_OPTIONS"};

// Starts the worker and waits for it to load the model. Errors: kUnavailable (the worker cannot
// start, died, or reported that it cannot load the model: the message says why),
// kDeadlineExceeded (no hello within start_timeout_s).
Result<std::shared_ptr<ModelBackend>> StartWorkerBackend(const WorkerBackendOptions& options);

// The process id of `backend`'s running worker; 0 when none runs or `backend` is no worker
// backend. For tests and logs.
pid_t ModelWorkerPid(const ModelBackend& backend);

// The worker's side: serves requests from the gateway on `fd` until the gateway closes it, with
// the model loaded from `model_fd` (the descriptor the gateway opened and checked; `gguf_path`
// names it in messages; -1: open `gguf_path`). The caller (the hidden `airlock __model-worker`
// command) has already confined the process. Returns the process exit code (0: the gateway closed
// the socket; 3: the model could not be loaded, after telling the gateway why). Test hook:
// $AIRLOCK_TEST_MODEL_WORKER makes the worker misbehave on requests whose text contains
// "airlock-test-hostile": giant-frame (a header claiming 4 GiB), garbage (a control frame that is
// not JSON), bad-result (a result with a negative count and an unknown finish reason), wrong-id
// (text for a request never issued), flood (text without end), stall (one piece, then silence for
// that request), leaky-error (an error message carrying an e-mail and a card).
int RunModelWorker(int fd, const std::string& gguf_path, int model_fd,
                   const EngineBackendOptions& options);

// The worker's side when it cannot even start serving (its sandbox cannot be applied): tells the
// gateway why, which then refuses to use it (fail closed).
void ReportModelWorkerFailure(int fd, const std::string& message);

}  // namespace airlock::server
