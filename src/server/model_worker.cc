// The worker process's side of the model worker (server/worker_backend.h): loads the model into
// an EngineBackend, then reads the gateway's frames on the main thread and runs each generation
// on its own thread (the engine batches them), streaming each text piece as one 'T' frame as soon
// as it is produced. The gateway closing the socket ends the process.
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "engine/tool_calls.h"
#include "server/engine_backend.h"
#include "server/internal/worker_protocol.h"
#include "server/worker_backend.h"

namespace airlock::server {
namespace {

using json = nlohmann::json;

// Generations in flight the worker accepts at once (the gateway's admission is far lower).
constexpr std::size_t kMaxInFlight = 1024;

class Writer {
 public:
  explicit Writer(int fd) : fd_(fd) {}
  // Sends one whole frame; false once the gateway is gone.
  bool Send(const std::string& frame) {
    std::lock_guard lock(mu_);
    std::size_t off = 0;
    while (off < frame.size()) {
      ssize_t n = ::send(fd_, frame.data() + off, frame.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

 private:
  int fd_;
  std::mutex mu_;
};

const char* CodeName(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
      return "invalid_argument";
    case StatusCode::kCancelled:
      return "cancelled";
    default:
      return "internal";
  }
}

// The test hook (see RunModelWorker in worker_backend.h). Returns true when it handled the
// request (misbehaved) instead of generating.
bool MisbehaveForTest(Writer& out, std::uint64_t id, const GenerateRequest& request) {
  static const char* mode = std::getenv("AIRLOCK_TEST_MODEL_WORKER");
  if (mode == nullptr) return false;
  std::string text = request.prompt;
  for (const auto& m : request.messages) text += m.content;
  if (text.find("airlock-test-hostile") == std::string::npos) return false;
  const std::string m = mode;
  if (m == "giant-frame") {
    out.Send(std::string("\xff\xff\xff\xffJ{\"op\":", 10));
  } else if (m == "garbage") {
    std::string body = "Jnot json {{{";
    out.Send(std::string{0, 0, 0, static_cast<char>(body.size())} + body);
  } else if (m == "bad-result") {
    out.Send(internal::EncodeJsonFrame(
        {{"op", "done"},
         {"id", id},
         {"result", {{"prompt_tokens", -5}, {"completion_tokens", 3}, {"finish_reason", "<x>"}}}}));
  } else if (m == "leaky-error") {
    // Another user's data (a compromised worker has seen every prompt) in an error message.
    out.Send(internal::EncodeJsonFrame(
        {{"op", "error"},
         {"id", id},
         {"code", "invalid_argument"},
         {"message", "leak alice.liddell@example.com 4111 1111 1111 1111"}}));
  } else if (m == "wrong-id") {
    out.Send(internal::EncodeTextFrame(id + 1000000, "not yours"));
  } else if (m == "flood") {
    const std::string piece(4096, 'x');
    while (out.Send(internal::EncodeTextFrame(id, piece))) {
    }
  } else if (m == "stall") {
    out.Send(internal::EncodeTextFrame(id, "stalling"));
    std::fprintf(stderr, "airlock test: model worker stalls\n");  // tests wait for this line
    for (;;) ::pause();  // until the gateway kills this process
  } else {
    return false;
  }
  return true;
}

}  // namespace

void ReportModelWorkerFailure(int fd, const std::string& message) {
  Writer(fd).Send(internal::EncodeJsonFrame({{"op", "fatal"}, {"message", message}}));
}

int RunModelWorker(int fd, const std::string& gguf_path, int model_fd,
                   const EngineBackendOptions& options) {
  auto out = std::make_shared<Writer>(fd);
  auto loaded = LoadEngineBackend(gguf_path, options, model_fd);
  if (!loaded) {
    out->Send(internal::EncodeJsonFrame({{"op", "fatal"}, {"message", loaded.error().message()}}));
    return 3;
  }
  std::shared_ptr<ModelBackend> backend = std::move(*loaded);
  if (!out->Send(internal::EncodeJsonFrame(
          {{"op", "hello"},
           {"protocol", internal::kWorkerProtocolVersion},
           {"tool_syntax", engine::ToolCallSyntaxName(backend->ToolSyntax())},
           {"think_open", backend->ReasoningTags().open},
           {"think_close", backend->ReasoningTags().close},
           {"kv_cache_bytes", backend->KvCache().bytes},
           {"kv_type", backend->KvCache().type}})))
    return 0;

  struct InFlight {
    std::mutex mu;
    std::map<std::uint64_t, std::shared_ptr<std::atomic<bool>>> cancel;
  };
  auto in_flight = std::make_shared<InFlight>();
  internal::FrameDecoder decoder(internal::kMaxGatewayFrameBytes);
  std::string buf(64 * 1024, '\0');
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the gateway is gone (or stopped this worker)
    decoder.Feed(buf.data(), static_cast<std::size_t>(n));
    for (;;) {
      auto frame = decoder.Next();
      if (!frame || !frame->has_value()) {
        if (!frame) ::_exit(4);  // the gateway's frames are malformed: nothing sensible to do
        break;
      }
      const json& j = (*frame)->json;
      if ((*frame)->kind != 'J' || !j.contains("op") || !j["op"].is_string() || !j.contains("id") ||
          !j["id"].is_number_unsigned())
        ::_exit(4);
      const std::string op = j["op"].get<std::string>();
      const std::uint64_t id = j["id"].get<std::uint64_t>();
      if (op == "cancel") {
        std::lock_guard lock(in_flight->mu);
        if (auto it = in_flight->cancel.find(id); it != in_flight->cancel.end()) *it->second = true;
      } else if (op == "count") {
        std::int64_t tokens = 0;
        if (auto t = j.find("text"); t != j.end() && t->is_string())
          tokens = backend->CountTokens(t->get<std::string>());
        out->Send(internal::EncodeJsonFrame({{"op", "count"}, {"id", id}, {"tokens", tokens}}));
      } else if (op == "generate") {
        auto request = j.contains("request")
                           ? internal::GenerateRequestFromWire(j["request"])
                           : Result<GenerateRequest>(InvalidArgument("no request"));
        auto flag = std::make_shared<std::atomic<bool>>(false);
        bool admitted = false;
        {
          std::lock_guard lock(in_flight->mu);
          if (request && in_flight->cancel.size() < kMaxInFlight) {
            in_flight->cancel[id] = flag;
            admitted = true;
          }
        }
        if (!admitted) {
          std::string message =
              request ? "model worker: too many requests in flight" : request.error().message();
          out->Send(internal::EncodeJsonFrame(
              {{"op", "error"}, {"id", id}, {"code", "internal"}, {"message", message}}));
          continue;
        }
        std::thread([backend, out, in_flight, flag, id, r = std::move(*request)] {
          if (!MisbehaveForTest(*out, id, r)) {
            auto got = backend->Generate(
                r,
                [&](std::string_view piece) {
                  return out->Send(internal::EncodeTextFrame(id, piece)) && !flag->load();
                },
                *flag);
            out->Send(internal::EncodeJsonFrame(
                got ? json{{"op", "done"}, {"id", id}, {"result", internal::ToWire(*got)}}
                    : json{{"op", "error"},
                           {"id", id},
                           {"code", CodeName(got.error().code())},
                           {"message", got.error().message()}}));
          }
          std::lock_guard lock(in_flight->mu);
          in_flight->cancel.erase(id);
        }).detach();
      }
    }
  }
  // Generations may still run on their threads: end the process without unwinding under them.
  ::_exit(0);
}

}  // namespace airlock::server
