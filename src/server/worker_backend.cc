// The gateway's side of the model worker (server/worker_backend.h). One Worker per incarnation
// of the worker process: its socket, the requests in flight on it (by id) and a reader thread
// that decodes and validates the worker's frames and hands each to its request. Request threads
// (Generate) wait on their own Call; they never read the socket, so one slow client never holds
// up the others' tokens. When a worker ends (EOF, protocol violation, stall, start timeout) the
// reader kills and reaps it and fails every Call it held; the next Generate starts a new worker.
#include "server/worker_backend.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "core/text.h"
#include "server/internal/worker_protocol.h"

extern char** environ;

namespace airlock::server {
namespace {

using internal::FrameDecoder;
using internal::WorkerMessage;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// After a request is cancelled (client gone, stop), how long it waits for the worker to confirm
// with its final counts before giving up on them (the worker's slot is freed either way).
constexpr auto kCancelGrace = std::chrono::seconds(5);
// The fd numbers the worker finds its socket and its model file on.
constexpr int kWorkerFd = 3;
constexpr int kModelFd = 4;

// One request in flight on a worker. Guarded by the Worker's mutex.
struct Call {
  std::condition_variable cv;
  std::deque<std::string> texts;  // arrived, not yet handed to on_text
  std::size_t text_bytes = 0;     // all text so far (capped)
  std::size_t max_text_bytes = 0;
  bool finished = false;
  Status status;  // when finished: an error, or Ok with `result`
  GenerateResult result;
  std::int64_t tokens = 0;  // a count request's answer
};

struct Worker {
  pid_t pid = 0;
  int fd = -1;
  // The model file this worker mapped (opened and checked by the gateway before the start); a
  // worker whose file changed since is retired before it answers another request.
  core::PinnedFile model;
  std::mutex mu;  // guards everything below, and the Calls
  std::condition_variable state_cv;
  bool ready = false;  // said hello
  bool dead = false;
  bool reaping = false;  // its reader is about to reap it: its pid may be reused, never signal it
  std::string death;     // why it ended
  std::map<std::uint64_t, std::shared_ptr<Call>> calls;
  std::uint64_t next_id = 1;
  std::mutex write_mu;  // one frame at a time on the socket
  std::atomic<bool> stopping{false};

  // The descriptor stays open (its number reserved) until no request thread can write to it.
  ~Worker() {
    if (fd >= 0) ::close(fd);
  }

  // Writes a whole frame. False when the worker is gone, or stopped reading for the send timeout
  // (SO_SNDTIMEO): then the socket is shut down, which ends the worker through its reader.
  bool Send(const std::string& frame) {
    std::lock_guard lock(write_mu);
    std::size_t off = 0;
    while (off < frame.size()) {
      ssize_t n = ::send(fd, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ::shutdown(fd, SHUT_RDWR);
        return false;
      }
      off += static_cast<std::size_t>(n);
    }
    return true;
  }
};

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = ::sigabbrev_np(WTERMSIG(status));
    return std::string("killed by SIG") +
           (name != nullptr ? name : std::to_string(WTERMSIG(status)));
  }
  return "ended";
}

class WorkerBackend : public ModelBackend {
 public:
  explicit WorkerBackend(WorkerBackendOptions options) : options_(std::move(options)) {}

  ~WorkerBackend() override {
    std::lock_guard start(start_mu_);
    Retire();
  }

  std::string Name() const override { return options_.engine.name; }

  // As the worker said in its hello (the model's chat template; the gateway never reads it).
  engine::ToolCallSyntax ToolSyntax() const override { return tool_syntax_.load(); }
  // Also from the hello (bounded there); they only decide where the worker's own output is split.
  engine::ReasoningMarkers ReasoningTags() const override {
    std::lock_guard lock(markers_mu_);
    return think_markers_;
  }
  KvCacheInfo KvCache() const override {
    std::lock_guard lock(markers_mu_);
    return kv_cache_;
  }

  std::int64_t CountTokens(std::string_view text) const override {
    // Not on any request path of the gateway (the worker reports usage with each result); kept
    // for the interface, answered by the worker. An estimate when the worker cannot answer.
    const std::int64_t estimate = static_cast<std::int64_t>(text.size() / 4 + 1);
    auto self = const_cast<WorkerBackend*>(this);
    auto w = self->EnsureWorker();
    if (!w) return estimate;
    auto call = std::make_shared<Call>();
    std::uint64_t id = Register(**w, call);
    const bool sent =
        (*w)->Send(internal::EncodeJsonFrame({{"op", "count"}, {"id", id}, {"text", text}}));
    std::unique_lock lock((*w)->mu);
    if (sent) call->cv.wait(lock, [&] { return call->finished; });  // the reader ends every call
    (*w)->calls.erase(id);
    if (!sent) return estimate;
    return call->status.ok() ? call->tokens : estimate;
  }

  Result<GenerateResult> Generate(const GenerateRequest& request,
                                  const std::function<bool(std::string_view)>& on_text,
                                  const std::atomic<bool>& cancel) override {
    AIRLOCK_ASSIGN_OR_RETURN(std::shared_ptr<Worker> w, EnsureWorker());
    auto call = std::make_shared<Call>();
    // Generous for any real output (a token is a few bytes; stop strings hold some back), small
    // enough that a worker streaming without end is cut off.
    call->max_text_bytes =
        (4u << 20) + 4096u * static_cast<std::size_t>(std::max(0, request.max_tokens));
    const std::uint64_t id = Register(*w, call);
    struct Forget {
      Worker& w;
      std::uint64_t id;
      ~Forget() {
        std::lock_guard lock(w.mu);
        w.calls.erase(id);
      }
    } forget{*w, id};
    if (!w->Send(internal::EncodeJsonFrame(
            {{"op", "generate"}, {"id", id}, {"request", internal::ToWire(request)}}))) {
      std::unique_lock lock(w->mu);
      w->state_cv.wait_for(lock, std::chrono::seconds(1), [&] { return w->dead; });
      return Unavailable("model worker is gone" + (w->dead ? ": " + w->death : std::string()));
    }
    bool stopped = false;  // on_text said stop, or cancelled: the rest is discarded
    Clock::time_point give_up{};
    std::deque<std::string> texts;
    for (;;) {
      bool finished = false;
      {
        std::unique_lock lock(w->mu);
        call->cv.wait_for(lock, std::chrono::milliseconds(100),
                          [&] { return !call->texts.empty() || call->finished; });
        texts.swap(call->texts);
        finished = call->finished;
      }
      for (const std::string& t : texts) {
        if (stopped || cancel.load()) break;
        if (!on_text(t)) stopped = true;
      }
      texts.clear();
      if (!stopped && cancel.load()) stopped = true;
      if (stopped && give_up == Clock::time_point{}) {
        give_up = Clock::now() + kCancelGrace;
        w->Send(internal::EncodeJsonFrame({{"op", "cancel"}, {"id", id}}));
      }
      if (finished) break;
      if (stopped && Clock::now() > give_up) {
        GenerateResult r;
        r.finish_reason = "cancelled";
        return r;
      }
    }
    std::lock_guard lock(w->mu);
    if (!call->status.ok()) return call->status;
    GenerateResult r = call->result;
    if (stopped && r.finish_reason != "stop") r.finish_reason = "cancelled";
    return r;
  }

  pid_t pid() {
    std::lock_guard lock(mu_);
    return worker_ && !worker_->dead ? worker_->pid : 0;
  }

  // The running worker, starting one when there is none (or the last one died).
  // The running worker, starting one when there is none, the last one died, or its model file
  // changed since it was checked (one fstat per request).
  Result<std::shared_ptr<Worker>> EnsureWorker() {
    {
      std::lock_guard lock(mu_);
      if (Usable(worker_)) return worker_;
    }
    std::lock_guard start(start_mu_);  // one start at a time; the others wait for it
    {
      std::lock_guard lock(mu_);
      if (Usable(worker_)) return worker_;
    }
    Retire();
    // Opened (and checked) before every start: a file replaced or rewritten after serve started
    // is not loaded by a restarted worker, and the worker maps exactly the checked file.
    Result<core::PinnedFile> model =
        options_.open_model ? options_.open_model() : core::PinnedFile::Open(options_.gguf_path);
    if (!model)
      return Unavailable("model worker for " + options_.engine.name +
                         " not started: " + model.error().message());
    AIRLOCK_ASSIGN_OR_RETURN(auto w, Spawn(std::move(*model)));
    std::unique_lock lock(w->mu);
    w->state_cv.wait(lock, [&] { return w->ready || w->dead; });  // the reader enforces the timeout
    if (w->dead) return Unavailable("model worker for " + options_.engine.name + ": " + w->death);
    if (Status same = w->model.Unchanged(); !same.ok()) {
      // Changed while the worker parsed it: what it loaded is not what was checked.
      lock.unlock();
      Retire();
      return Unavailable("model worker for " + options_.engine.name + ": " + same.message());
    }
    return w;
  }

 private:
  static bool WorkerDead(Worker& w) {
    std::lock_guard lock(w.mu);
    return w.dead;
  }

  static bool Usable(const std::shared_ptr<Worker>& w) {
    return w && !WorkerDead(*w) && w->model.Unchanged().ok();
  }

  static std::uint64_t Register(Worker& w, const std::shared_ptr<Call>& call) {
    std::lock_guard lock(w.mu);
    std::uint64_t id = w.next_id++;
    if (w.dead) {
      call->finished = true;
      call->status = Unavailable("model worker died: " + w.death);
    }
    w.calls[id] = call;
    return id;
  }

  // Ends the current worker (if any) and joins its reader. Under start_mu_.
  void Retire() {
    std::shared_ptr<Worker> old;
    {
      std::lock_guard lock(mu_);
      old = std::move(worker_);
    }
    if (old) {
      old->stopping = true;
      std::lock_guard lock(old->mu);
      if (!old->reaping) ::kill(old->pid, SIGKILL);
    }
    if (reader_.joinable()) reader_.join();
  }

  Result<std::shared_ptr<Worker>> Spawn(core::PinnedFile model) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      return Unavailable(std::string("model worker: socketpair: ") + std::strerror(errno));
    // Both sources above the target numbers, so that neither dup2 overwrites the other's source
    // and neither is a dup2 onto itself (which would keep FD_CLOEXEC).
    int child_end = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[1]);
    int model_end = ::fcntl(model.fd(), F_DUPFD_CLOEXEC, 10);
    if (child_end < 0 || model_end < 0) {
      const int err = errno;
      for (int fd : {sv[0], child_end, model_end})
        if (fd >= 0) ::close(fd);
      return Unavailable(std::string("model worker: descriptors: ") + std::strerror(err));
    }
    std::vector<std::string> args = {
        options_.program, "__model-worker",
        "--fd",           std::to_string(kWorkerFd),
        "--model",        options_.gguf_path,
        "--model-fd",     std::to_string(kModelFd),
        "--name",         options_.engine.name,
        "--slots",        std::to_string(options_.engine.slots),
        "--threads",      std::to_string(options_.engine.threads),
        "--ctx",          std::to_string(options_.engine.ctx),
        "--kv-type",      engine::KvCacheTypeName(options_.engine.kv_type)};
    if (!options_.engine.batched) args.push_back("--no-batching");
    std::vector<std::string> env;
    for (const char* name : kWorkerEnvironment)
      if (const char* v = std::getenv(name)) env.push_back(std::string(name) + "=" + v);
    std::vector<char*> argv, envp;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
    posix_spawn_file_actions_adddup2(&fa, child_end, kWorkerFd);
    posix_spawn_file_actions_adddup2(&fa, model_end, kModelFd);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGUSR1}) sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&attr, &none);  // serve blocks its signals for sigwait
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(
        &attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, options_.program.c_str(), &fa, &attr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(child_end);
    ::close(model_end);
    if (rc != 0) {
      ::close(sv[0]);
      return Unavailable("model worker: cannot start " + options_.program + ": " +
                         std::strerror(rc));
    }
    auto w = std::make_shared<Worker>();
    w->pid = pid;
    w->fd = sv[0];
    w->model = std::move(model);
    // A worker that stops reading cannot block a request thread for longer than this.
    timeval send_timeout{std::max(1, options_.stall_timeout_s), 0};
    ::setsockopt(w->fd, SOL_SOCKET, SO_SNDTIMEO, &send_timeout, sizeof send_timeout);
    {
      std::lock_guard lock(mu_);
      worker_ = w;
    }
    reader_ = std::thread([this, w] { Read(w); });
    return w;
  }

  // The reader thread of one worker: until it ends, frames in, validated, to their Calls.
  void Read(std::shared_ptr<Worker> w) {
    FrameDecoder decoder(internal::kMaxWorkerFrameBytes);
    const auto started = Clock::now();
    auto last_frame = started;
    std::string why;
    std::vector<char> buf(64 * 1024);
    while (why.empty()) {
      if (w->stopping.load()) {
        why = "stopped by the gateway";
        break;
      }
      pollfd p{w->fd, POLLIN, 0};
      int ready = ::poll(&p, 1, 250);
      if (ready < 0 && errno != EINTR) {
        why = std::string("poll: ") + std::strerror(errno);
        break;
      }
      if (ready > 0) {
        ssize_t n = ::read(w->fd, buf.data(), buf.size());
        if (n == 0) {
          why = w->stopping.load() ? "stopped by the gateway" : "closed its socket";
          break;
        }
        if (n < 0 && errno != EINTR && errno != EAGAIN) {
          why = std::string("read: ") + std::strerror(errno);
          break;
        }
        if (n > 0) decoder.Feed(buf.data(), static_cast<std::size_t>(n));
        for (;;) {
          auto frame = decoder.Next();
          if (!frame) {
            why = "broke the protocol: " + frame.error().message();
            break;
          }
          if (!frame->has_value()) break;
          last_frame = Clock::now();
          auto message = internal::ParseWorkerMessage(std::move(**frame));
          if (!message) {
            why = "broke the protocol: " + message.error().message();
            break;
          }
          why = Deliver(*w, *message);
          if (!why.empty()) break;
        }
        if (!why.empty()) break;
      }
      std::lock_guard lock(w->mu);
      const auto now = Clock::now();
      if (!w->ready && now - started > std::chrono::seconds(options_.start_timeout_s))
        why = "did not load the model within " + std::to_string(options_.start_timeout_s) + " s";
      else if (w->ready && !w->calls.empty() &&
               now - last_frame > std::chrono::seconds(options_.stall_timeout_s))
        why = "sent nothing for " + std::to_string(options_.stall_timeout_s) +
              " s with requests waiting";
    }
    // Whatever happened, this worker is done: kill, reap, fail what it held.
    {
      std::lock_guard lock(w->mu);
      w->reaping = true;
    }
    ::kill(w->pid, SIGKILL);
    int status = 0;
    while (::waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
    }
    ::shutdown(w->fd, SHUT_RDWR);  // closed by ~Worker, once no request thread holds it
    std::string death = why + " (" + DescribeExit(status) + ")";
    if (!w->stopping.load())
      std::fprintf(stderr, "airlock serve: model worker %d for '%s' %s\n", static_cast<int>(w->pid),
                   core::TerminalSafe(options_.engine.name).c_str(), death.c_str());
    std::lock_guard lock(w->mu);
    w->dead = true;
    w->death = death;
    for (auto& [id, call] : w->calls) {
      if (call->finished) continue;
      call->finished = true;
      call->status = Unavailable("model worker " + death);
      call->cv.notify_all();
    }
    w->state_cv.notify_all();
  }

  // Hands one validated message to its Call. Returns why the worker must end, "" when it may go
  // on. Failed starts print the worker's own message (terminal-safe).
  std::string Deliver(Worker& w, WorkerMessage& m) {
    std::lock_guard lock(w.mu);
    using Op = WorkerMessage::Op;
    if (m.op == Op::kFatal) return "could not load the model: " + core::TerminalSafe(m.text);
    if (m.op == Op::kHello) {
      if (w.ready) return "broke the protocol: a second hello";
      w.ready = true;
      tool_syntax_.store(m.tool_syntax);
      {
        std::lock_guard markers_lock(markers_mu_);
        think_markers_ = m.think_markers;
        kv_cache_ = m.kv_cache;
      }
      w.state_cv.notify_all();
      return "";
    }
    if (!w.ready) return "broke the protocol: a message before hello";
    auto it = w.calls.find(m.id);
    if (it == w.calls.end()) {
      // A request the gateway stopped waiting for may still get its last frames.
      if (m.id != 0 && m.id < w.next_id) return "";
      return "broke the protocol: a message for a request never sent";
    }
    Call& call = *it->second;
    if (call.finished) return "broke the protocol: a message after the request ended";
    switch (m.op) {
      case Op::kText:
        call.text_bytes += m.text.size();
        if (call.text_bytes > call.max_text_bytes)
          return "broke the protocol: more text than the request allows";
        call.texts.push_back(std::move(m.text));
        break;
      case Op::kDone:
        call.finished = true;
        call.result = m.result;
        break;
      case Op::kError:
        call.finished = true;
        call.status = Status(m.code, m.text);
        break;
      case Op::kCount:
        call.finished = true;
        call.tokens = m.tokens;
        break;
      default:
        return "broke the protocol: unexpected message";
    }
    call.cv.notify_all();
    return "";
  }

  const WorkerBackendOptions options_;
  std::mutex start_mu_;  // serializes starts and the destructor
  std::mutex mu_;        // guards worker_
  std::shared_ptr<Worker> worker_;
  std::atomic<engine::ToolCallSyntax> tool_syntax_{engine::ToolCallSyntax::kNone};
  mutable std::mutex markers_mu_;
  engine::ReasoningMarkers think_markers_;
  KvCacheInfo kv_cache_;  // as the current worker's hello reported it (guarded by markers_mu_)
  std::thread reader_;    // the current worker's reader (under start_mu_)
};

}  // namespace

Result<std::shared_ptr<ModelBackend>> StartWorkerBackend(const WorkerBackendOptions& options) {
  auto backend = std::make_shared<WorkerBackend>(options);
  AIRLOCK_TRY(backend->EnsureWorker().status());
  return std::shared_ptr<ModelBackend>(backend);
}

pid_t ModelWorkerPid(const ModelBackend& backend) {
  auto* w = dynamic_cast<const WorkerBackend*>(&backend);
  return w != nullptr ? const_cast<WorkerBackend*>(w)->pid() : 0;
}

}  // namespace airlock::server
