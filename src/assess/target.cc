#include "assess/target.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <regex>

#include "assess/http_client.h"
#include "core/text.h"
#include "server/engine_backend.h"

namespace airlock::assess {
namespace {

using nlohmann::json;

// error.message of an OpenAI-style error reply, or "" (the endpoint is untrusted: any shape).
std::string ErrorMessage(const json& doc) {
  if (doc.is_discarded() || !doc.is_object()) return "";
  auto error = doc.find("error");
  if (error == doc.end() || !error->is_object()) return "";
  auto message = error->find("message");
  return message != error->end() && message->is_string() ? message->get<std::string>() : "";
}

// A reply nested deeper than this is refused before it is parsed.
constexpr std::size_t kMaxReplyDepth = 32;

class EndpointTarget : public ChatTarget {
 public:
  EndpointTarget(EndpointOptions options, std::string host, int port, std::string path_prefix)
      : options_(std::move(options)),
        host_(std::move(host)),
        port_(port),
        path_prefix_(std::move(path_prefix)) {}

  Result<ChatReply> Chat(const std::vector<ChatMessage>& messages,
                         const GenerationParams& params) override {
    json body = {{"messages", json::array()},
                 {"temperature", params.temperature},
                 {"max_tokens", params.max_tokens},
                 {"seed", params.seed},
                 {"stream", false}};
    if (!options_.model.empty()) body["model"] = options_.model;
    for (const auto& m : messages)
      body["messages"].push_back({{"role", m.role}, {"content", m.content}});
    std::vector<std::pair<std::string, std::string>> headers;
    if (!options_.api_key.empty())
      headers.emplace_back("Authorization", "Bearer " + options_.api_key);
    ReplyLimits caps = ReplyLimitsFor(params, options_);
    HttpLimits limits;
    limits.max_body_bytes = caps.max_bytes;
    limits.deadline = std::chrono::milliseconds(caps.deadline_ms);
    auto res = HttpPost(host_, port_, path_prefix_ + "/chat/completions", headers,
                        body.dump(-1, ' ', false, json::error_handler_t::replace), limits);
    if (!res.has_value()) {
      const Status& e = res.error();
      std::string what = "probe: " + options_.base_url + ": " + e.message();
      if (e.code() == StatusCode::kLimitExceeded || e.code() == StatusCode::kDeadlineExceeded ||
          e.code() == StatusCode::kCorrupt)
        return Status(e.code(), what);
      return Unavailable("probe: cannot reach " + options_.base_url + ": " + e.message());
    }
    if (core::JsonNestingDepth(res->body, kMaxReplyDepth) > kMaxReplyDepth)
      return Corrupt("probe: endpoint reply is nested deeper than " +
                     std::to_string(kMaxReplyDepth) + " levels");
    json doc = json::parse(res->body, nullptr, false);
    if (res->status == 403 && options_.trust_policy_blocks) {
      // A governance gateway refused the request by policy: the attack did not reach the model.
      ChatReply blocked;
      blocked.blocked = true;
      if (!doc.is_discarded() && doc.is_object() && doc.contains("error") &&
          doc["error"].is_object())
        blocked.content = "[blocked by gateway policy: " + ErrorMessage(doc) + "]";
      return blocked;
    }
    if (res->status != 200) {
      std::string msg = "HTTP " + std::to_string(res->status);
      // The message ends up on stderr: escaped.
      if (std::string m = ErrorMessage(doc); !m.empty()) msg += ": " + core::TerminalSafe(m);
      return InvalidArgument("probe: endpoint refused the request: " + msg);
    }
    if (doc.is_discarded() || !doc.is_object() || !doc.contains("choices") ||
        !doc["choices"].is_array() || doc["choices"].empty() || !doc["choices"][0].is_object() ||
        !doc["choices"][0].contains("message") || !doc["choices"][0]["message"].is_object()) {
      return Corrupt("probe: endpoint reply is not a chat completion");
    }
    const json& msg = doc["choices"][0]["message"];
    ChatReply reply;
    auto content = msg.find("content");
    std::string text;
    if (content != msg.end() && content->is_string()) {
      text = content->get<std::string>();
    } else if ((content == msg.end() || content->is_null()) && msg.contains("refusal") &&
               msg["refusal"].is_string()) {
      // OpenAI's structured refusal: content null, the refusal text beside it.
      text = msg["refusal"].get<std::string>();
    } else if (content == msg.end() || content->is_null()) {
      return Corrupt("probe: endpoint reply has no content (null or missing)");
    } else {
      return Corrupt(std::string("probe: endpoint reply content is ") + content->type_name() +
                     ", not a string");
    }
    SplitReasoning(text, &reply.reasoning, &reply.content);
    if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string())
      reply.reasoning = msg["reasoning_content"].get<std::string>() + reply.reasoning;
    if (doc.contains("usage") && doc["usage"].is_object()) {
      const json& usage = doc["usage"];
      if (usage.contains("prompt_tokens") && usage["prompt_tokens"].is_number_integer())
        reply.prompt_tokens = static_cast<int>(
            std::clamp<std::int64_t>(usage["prompt_tokens"].get<std::int64_t>(), 0, 1 << 30));
      if (usage.contains("completion_tokens") && usage["completion_tokens"].is_number_integer())
        reply.completion_tokens = static_cast<int>(
            std::clamp<std::int64_t>(usage["completion_tokens"].get<std::int64_t>(), 0, 1 << 30));
    }
    return reply;
  }

  std::string Describe() const override {
    if (!options_.label.empty()) return options_.label;
    return "endpoint " + options_.base_url +
           (options_.model.empty() ? "" : " model " + options_.model);
  }

 private:
  EndpointOptions options_;
  std::string host_;
  int port_;
  std::string path_prefix_;
};

class LocalTarget : public ChatTarget {
 public:
  LocalTarget(std::shared_ptr<server::ModelBackend> backend, std::string path)
      : backend_(std::move(backend)), path_(std::move(path)) {}

  Result<ChatReply> Chat(const std::vector<ChatMessage>& messages,
                         const GenerationParams& params) override {
    server::GenerateRequest req;
    req.chat = true;
    req.messages = messages;  // one message type for assess and the server
    req.max_tokens = params.max_tokens;
    req.temperature = params.temperature;
    req.seed = params.seed;
    std::string text;
    std::atomic<bool> cancel{false};
    auto result = backend_->Generate(
        req,
        [&](std::string_view piece) {
          text.append(piece);
          return true;
        },
        cancel);
    if (!result.has_value()) return result.error();
    ChatReply reply;
    SplitReasoning(text, &reply.reasoning, &reply.content);
    reply.prompt_tokens = static_cast<int>(result->prompt_tokens);
    reply.completion_tokens = static_cast<int>(result->completion_tokens);
    return reply;
  }

  std::string Describe() const override { return "local " + path_; }

 private:
  std::shared_ptr<server::ModelBackend> backend_;
  std::string path_;
};

}  // namespace

Result<std::unique_ptr<ChatTarget>> MakeLocalTarget(const std::string& gguf_path, int threads,
                                                    int ctx) {
  server::EngineBackendOptions o;
  o.name = gguf_path;
  o.threads = threads;
  o.ctx = ctx;
  AIRLOCK_ASSIGN_OR_RETURN(auto backend, server::LoadEngineBackend(gguf_path, o));
  return std::unique_ptr<ChatTarget>(new LocalTarget(std::move(backend), gguf_path));
}

void SplitReasoning(const std::string& text, std::string* reasoning, std::string* answer) {
  static const std::string kOpen = "<think>", kClose = "</think>";
  reasoning->clear();
  std::size_t close = text.find(kClose);
  if (close == std::string::npos) {
    *answer = text;
    return;
  }
  std::size_t open = text.find(kOpen);
  std::size_t start = (open != std::string::npos && open < close) ? open + kOpen.size() : 0;
  *reasoning = text.substr(start, close - start);
  std::string rest = text.substr(close + kClose.size());
  std::size_t first = rest.find_first_not_of(" \t\r\n");
  *answer = first == std::string::npos ? "" : rest.substr(first);
}

ReplyLimits ReplyLimitsFor(const GenerationParams& params, const EndpointOptions& options) {
  const std::int64_t tokens = std::clamp(params.max_tokens, 1, 1 << 20);
  ReplyLimits limits;
  limits.max_bytes = options.max_reply_bytes > 0
                         ? options.max_reply_bytes
                         : static_cast<std::size_t>((64 << 10) + 512 * tokens);
  limits.deadline_ms =
      options.timeout_seconds > 0
          ? options.timeout_seconds * 1000
          : static_cast<int>(std::min<std::int64_t>(30000 + 250 * tokens, 24 * 3600 * 1000));
  return limits;
}

Result<std::unique_ptr<ChatTarget>> MakeEndpointTarget(const EndpointOptions& options) {
  static const std::regex kUrl(
      R"(^(http)://([A-Za-z0-9.\-]+|\[[0-9a-fA-F:]+\])(:[0-9]{1,5})?(/[^?#]*)?$)");
  std::smatch m;
  if (!std::regex_match(options.base_url, m, kUrl)) {
    if (options.base_url.rfind("https://", 0) == 0)
      return InvalidArgument(
          "probe: https endpoints are not supported by this build; put a "
          "local `airlock serve` with an https upstream in front");
    return InvalidArgument("probe: endpoint must look like http://host:port[/v1], got '" +
                           options.base_url + "'");
  }
  std::string host = m[2].str();
  if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = 80;
  if (m[3].length() > 0) {
    port = std::stoi(m[3].str().substr(1));
    if (port < 1 || port > 65535) return InvalidArgument("probe: endpoint port out of range");
  }
  std::string path = m[4].str();
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.empty()) path = "/v1";
  return std::unique_ptr<ChatTarget>(new EndpointTarget(options, host, port, path));
}

}  // namespace airlock::assess
