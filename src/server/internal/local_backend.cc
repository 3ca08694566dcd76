// Local models: a request already transformed by the policy becomes a GenerateRequest for the
// ModelBackend; its output is shaped like an OpenAI response (or SSE chunks through a Channel)
// and then goes through the same response policy as an upstream's.
#include <thread>

#include "server/internal/gateway_impl.h"

namespace airlock::server {

using namespace internal;

void Gateway::Impl::ServeLocal(std::shared_ptr<RequestState> st, json body, bool stream,
                               std::shared_ptr<ModelBackend> backend, HttpResponse& res) {
  st->forwarded = true;
  GenerateRequest g;
  g.chat = st->chat;
  if (st->chat) {
    for (const json& m : body["messages"]) {
      ChatMessage cm;
      cm.role = m.at("role").get<std::string>();  // checked by ParseCompletionRequest
      if (auto c = m.find("content"); c != m.end()) {
        if (c->is_string()) {
          cm.content = c->get<std::string>();
        } else if (c->is_array()) {
          for (const json& part : *c) {
            if (part.is_string())
              cm.content += part.get<std::string>();
            else if (part.is_object() && part.contains("text") && part["text"].is_string())
              cm.content += part["text"].get<std::string>();
          }
        }
      }
      g.messages.push_back(std::move(cm));
    }
  } else {
    const json& p = body["prompt"];
    g.prompt = p.is_string() ? p.get<std::string>() : (p.empty() ? "" : p[0].get<std::string>());
  }
  g.max_tokens = static_cast<int>(st->completion_cap);
  if (auto t = body.find("temperature"); t != body.end() && t->is_number()) g.temperature = *t;
  if (auto t = body.find("top_p"); t != body.end() && t->is_number()) g.top_p = *t;
  if (auto s = body.find("seed"); s != body.end() && s->is_number_unsigned())
    g.seed = s->get<std::uint64_t>();
  if (auto s = body.find("stop"); s != body.end()) {
    if (s->is_string())
      g.stop.push_back(*s);
    else if (s->is_array())
      for (const json& e : *s)
        if (e.is_string()) g.stop.push_back(e);
  }
  std::string id = (st->chat ? "chatcmpl-" : "cmpl-") + RandomId();
  std::int64_t created = NowSeconds();
  std::string object = st->chat ? "chat.completion.chunk" : "text_completion";
  auto make_chunk = [st, id, created, object](const std::string& text, json finish) {
    json c = {{"id", id}, {"object", object}, {"created", created}, {"model", st->model}};
    c["choices"] = json::array(
        {st->chat ? json{{"index", 0}, {"delta", {{"content", text}}}, {"finish_reason", finish}}
                  : json{{"index", 0}, {"text", text}, {"finish_reason", finish}}});
    return c;
  };
  if (!stream) {
    std::string text;
    auto r = backend->Generate(
        g,
        [&](std::string_view piece) {
          text += piece;
          return true;
        },
        cancel_all);  // set by a drain past its deadline
    if (!r && r.error().code() == StatusCode::kUnavailable) {
      // The model's worker process died or misbehaved (server/worker_backend.h): a bad gateway.
      st->actions.push_back("model worker failed: " + r.error().message());
      return Fail(*st, res, 502, "Local model failed: " + r.error().message(), "model_error");
    }
    if (!r) return Fail(*st, res, 500, "Local model failed: " + r.error().message(), "model_error");
    json out = {{"id", id},
                {"object", st->chat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", st->model}};
    out["choices"] = json::array(
        {st->chat ? json{{"index", 0},
                         {"message", {{"role", "assistant"}, {"content", text}}},
                         {"finish_reason", r->finish_reason}}
                  : json{{"index", 0}, {"text", text}, {"finish_reason", r->finish_reason}}});
    out["usage"] = {{"prompt_tokens", r->prompt_tokens},
                    {"completion_tokens", r->completion_tokens},
                    {"total_tokens", r->prompt_tokens + r->completion_tokens}};
    TransformResponse(*st, out);
    if (st->response_blocked)
      return Fail(*st, res, 403, "Response blocked by policy: " + st->response_block_reason,
                  "policy_violation");
    Finish(*st, 200, st->prompt_tokens + st->completion_tokens, st->ResponseText());
    res.set_content(out.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
    return;
  }
  auto ch = std::make_shared<Channel>();
  ch->SetStatus(200);
  std::thread([backend, ch, g, make_chunk, st]() {
    auto emit = [&](const json& j) {
      std::string frame =
          "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
      return ch->Push(frame.data(), frame.size());
    };
    if (st->chat) {
      json first = make_chunk("", nullptr);
      first["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
      emit(first);
    }
    auto r = backend->Generate(
        g, [&](std::string_view piece) { return emit(make_chunk(std::string(piece), nullptr)); },
        ch->cancel);
    if (r) {
      emit(make_chunk("", r->finish_reason));
      json usage = make_chunk("", nullptr);
      usage["choices"] = json::array();
      usage["usage"] = {{"prompt_tokens", r->prompt_tokens},
                        {"completion_tokens", r->completion_tokens},
                        {"total_tokens", r->prompt_tokens + r->completion_tokens}};
      emit(usage);
    }
    // Read by the stream's writer after Finish (the channel's lock orders them): audited, 502.
    if (!r) st->actions.push_back("model failed: " + r.error().message());
    ch->Finish(r ? 0 : -1);
  }).detach();
  StreamToClient(st, ch, res);
}

}  // namespace airlock::server
