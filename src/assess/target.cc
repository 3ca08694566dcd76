#include "assess/target.h"

#include <httplib.h>

#include <nlohmann/json.hpp>
#include <regex>

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

class EndpointTarget : public ChatTarget {
 public:
  EndpointTarget(EndpointOptions options, std::string scheme_host_port, std::string path_prefix)
      : options_(std::move(options)),
        client_(scheme_host_port),
        path_prefix_(std::move(path_prefix)) {
    client_.set_connection_timeout(10);
    client_.set_read_timeout(options_.timeout_seconds);
    client_.set_write_timeout(30);
  }

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
    httplib::Headers headers;
    if (!options_.api_key.empty()) headers.emplace("Authorization", "Bearer " + options_.api_key);
    auto res =
        client_.Post(path_prefix_ + "/chat/completions", headers, body.dump(), "application/json");
    if (!res) {
      return Unavailable("probe: cannot reach " + options_.base_url + ": " +
                         httplib::to_string(res.error()));
    }
    json doc = json::parse(res->body, nullptr, false);
    if (res->status == 403) {
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
    if (doc.is_discarded() || !doc.contains("choices") || !doc["choices"].is_array() ||
        doc["choices"].empty() || !doc["choices"][0].contains("message")) {
      return Corrupt("probe: endpoint reply is not a chat completion");
    }
    const json& msg = doc["choices"][0]["message"];
    ChatReply reply;
    std::string content = msg.contains("content") && msg["content"].is_string()
                              ? msg["content"].get<std::string>()
                              : "";
    SplitReasoning(content, &reply.reasoning, &reply.content);
    if (msg.contains("reasoning_content") && msg["reasoning_content"].is_string())
      reply.reasoning = msg["reasoning_content"].get<std::string>() + reply.reasoning;
    if (doc.contains("usage") && doc["usage"].is_object()) {
      reply.prompt_tokens = doc["usage"].value("prompt_tokens", 0);
      reply.completion_tokens = doc["usage"].value("completion_tokens", 0);
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
  httplib::Client client_;
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
    for (const auto& m : messages) req.messages.push_back({m.role, m.content});
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
  std::string host_port = m[1].str() + "://" + m[2].str() + m[3].str();
  std::string path = m[4].str();
  while (!path.empty() && path.back() == '/') path.pop_back();
  if (path.empty()) path = "/v1";
  return std::unique_ptr<ChatTarget>(new EndpointTarget(options, host_port, path));
}

}  // namespace airlock::assess
