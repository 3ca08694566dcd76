// Local models: a request already transformed by the policy becomes one GenerateRequest per choice
// (`n`, each with its own seed) for the ModelBackend; its output is shaped like an OpenAI response
// (or SSE chunks through a Channel), with logprobs and parsed tool calls when asked, and then goes
// through the same response policy as an upstream's. The OpenAI parameters are checked first
// (internal/local_params.h): what local models do not implement is a 400 naming the parameter.
#include <thread>

#include "engine/sampler.h"
#include "engine/tool_calls.h"
#include "server/internal/gateway_impl.h"
#include "server/internal/local_params.h"

namespace airlock::server {

using namespace internal;

namespace {

json AlternativeJson(const TokenLogprobAlternative& t) {
  return {{"token", t.token}, {"logprob", t.logprob}, {"bytes", t.bytes}};
}

// OpenAI's choice.logprobs: chat {"content": [...]}, completions the legacy arrays.
json LogprobsJson(const std::vector<TokenLogprob>& lps, bool chat, std::size_t text_offset) {
  if (chat) {
    json content = json::array();
    for (const TokenLogprob& t : lps) {
      json e = AlternativeJson(t);
      e["top_logprobs"] = json::array();
      for (const auto& alt : t.top) e["top_logprobs"].push_back(AlternativeJson(alt));
      content.push_back(std::move(e));
    }
    return {{"content", std::move(content)}, {"refusal", nullptr}};
  }
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const TokenLogprob& t : lps) {
    tokens.push_back(t.token);
    token_logprobs.push_back(t.logprob);
    json alts = json::object();
    for (const auto& alt : t.top) alts[alt.token] = alt.logprob;
    top.push_back(std::move(alts));
    offsets.push_back(text_offset);
    text_offset += t.bytes.size();
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

json ToolCallsJson(const std::vector<engine::ToolCall>& calls, bool with_index) {
  json out = json::array();
  for (std::size_t i = 0; i < calls.size(); ++i) {
    json c = {{"id", "call_" + RandomId()},
              {"type", "function"},
              {"function", {{"name", calls[i].name}, {"arguments", calls[i].arguments}}}};
    if (with_index) c["index"] = i;
    out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

std::string Gateway::Impl::ModelErrorDetail(const std::string& message) const {
  if (detectors != nullptr && !detectors->Scan(message).empty())
    return "(its error message was withheld: sensitive data)";
  return message;
}

void Gateway::Impl::ServeLocal(std::shared_ptr<RequestState> st, json body, bool stream,
                               std::shared_ptr<ModelBackend> backend, HttpResponse& res) {
  LocalParams params;
  if (auto invalid = ParseLocalParams(body, st->chat, backend->ToolSyntax(), &params))
    return Fail(*st, res, 400, invalid->message, invalid->code, invalid->param);
  st->forwarded = true;
  // The model's own reasoning markers, before its first piece is split.
  const engine::ReasoningMarkers tags = backend->ReasoningTags();
  st->think_markers = {tags.open, tags.close};
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
      // Checked by ParseLocalParams.
      if (auto calls = m.find("tool_calls"); calls != m.end() && calls->is_array())
        cm.tool_calls_json = calls->dump();
      if (auto id = m.find("tool_call_id"); id != m.end() && id->is_string())
        cm.tool_call_id = id->get<std::string>();
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
  g.presence_penalty = params.presence_penalty;
  g.frequency_penalty = params.frequency_penalty;
  g.json_schema = params.json_schema;
  g.json_object = params.json_object;
  g.logprobs = params.logprobs;
  g.top_logprobs = params.top_logprobs;
  g.tools_json = params.tools_json;
  const bool tools = !params.tools_json.empty();
  const engine::ToolCallSyntax syntax = backend->ToolSyntax();
  const int n = params.n;
  const std::uint64_t seed = g.seed;

  std::string id = (st->chat ? "chatcmpl-" : "cmpl-") + RandomId();
  std::int64_t created = NowSeconds();
  std::string object = st->chat ? "chat.completion.chunk" : "text_completion";
  auto make_chunk = [st, id, created, object](int index, const std::string& text, json finish) {
    json c = {{"id", id}, {"object", object}, {"created", created}, {"model", st->model}};
    c["choices"] = json::array(
        {st->chat
             ? json{{"index", index}, {"delta", {{"content", text}}}, {"finish_reason", finish}}
             : json{{"index", index}, {"text", text}, {"finish_reason", finish}}});
    return c;
  };
  if (!stream) {
    json choices = json::array();
    std::int64_t prompt_tokens = 0, completion_tokens = 0;
    for (int i = 0; i < n; ++i) {
      GenerateRequest gi = g;
      gi.seed = engine::ChoiceSeed(seed, i);
      std::string text;
      auto r = backend->Generate(
          gi,
          [&](std::string_view piece) {
            text += piece;
            return true;
          },
          cancel_all);  // set by a drain past its deadline
      // The message comes from the model's worker, which has seen every prompt: like an
      // upstream's, it reaches the client (and the audit) only when no detector fires on it.
      const std::string detail = r ? "" : ModelErrorDetail(r.error().message());
      if (!r && r.error().code() == StatusCode::kUnavailable) {
        // The model's worker process died or misbehaved (server/worker_backend.h): a bad gateway.
        st->actions.push_back("model worker failed: " + detail);
        return Fail(*st, res, 502, "Local model failed: " + detail, "model_error");
      }
      if (!r) {
        // A backend error: what the request got wrong is a 400, the rest a 500.
        const Status& e = r.error();
        if (e.code() != StatusCode::kInvalidArgument)
          return Fail(*st, res, 500, "Local model failed: " + detail, "model_error");
        bool format = e.message().rfind("response_format", 0) == 0;
        return Fail(*st, res, 400, "The local model cannot serve this request: " + detail,
                    format ? "invalid_value" : "invalid_request",
                    format ? "response_format" : (st->chat ? "messages" : "prompt"));
      }
      prompt_tokens = r->prompt_tokens;
      completion_tokens += r->completion_tokens;
      std::string finish = r->finish_reason;
      json choice = {{"index", i}, {"finish_reason", finish}};
      if (st->chat) {
        json message = {{"role", "assistant"}, {"content", text}};
        if (tools) {
          engine::ParsedReply parsed = engine::ParseToolCalls(text, syntax);
          if (!parsed.tool_calls.empty()) {
            message["content"] = parsed.content.empty() ? json(nullptr) : json(parsed.content);
            message["tool_calls"] = ToolCallsJson(parsed.tool_calls, false);
            if (finish == "stop") choice["finish_reason"] = "tool_calls";
          }
        }
        choice["message"] = std::move(message);
      } else {
        choice["text"] = text;
      }
      choice["logprobs"] = params.logprobs ? LogprobsJson(r->logprobs, st->chat, 0) : json(nullptr);
      choices.push_back(std::move(choice));
    }
    json out = {{"id", id},
                {"object", st->chat ? "chat.completion" : "text_completion"},
                {"created", created},
                {"model", st->model}};
    out["choices"] = std::move(choices);
    out["usage"] = {{"prompt_tokens", prompt_tokens},
                    {"completion_tokens", completion_tokens},
                    {"total_tokens", prompt_tokens + completion_tokens}};
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
  const bool chat = st->chat;
  const bool logprobs = params.logprobs;
  std::thread([backend, ch, g, make_chunk, chat, n, seed, tools, syntax, logprobs, st]() {
    auto emit = [&](const json& j) {
      std::string frame =
          "data: " + j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n\n";
      return ch->Push(frame.data(), frame.size());
    };
    std::int64_t prompt_tokens = 0, completion_tokens = 0;
    bool ok = true;
    std::string failure;  // the backend's error, when a choice failed
    // The choices one after the other, each a stream of its own index.
    for (int i = 0; ok && i < n && !ch->cancel.load(); ++i) {
      if (chat) {
        json first = make_chunk(i, "", nullptr);
        first["choices"][0]["delta"] = {{"role", "assistant"}, {"content", ""}};
        emit(first);
      }
      GenerateRequest gi = g;
      gi.seed = engine::ChoiceSeed(seed, i);
      // With tools the reply is held until it is complete: the call markers must not reach the
      // client as text, and a call is only known once its block has closed.
      std::string held;
      auto r = backend->Generate(
          gi,
          [&](std::string_view piece) {
            if (tools) {
              held += piece;
              return !ch->cancel.load();
            }
            return emit(make_chunk(i, std::string(piece), nullptr));
          },
          ch->cancel);
      if (!r) {
        ok = false;
        failure = r.error().message();
        break;
      }
      prompt_tokens = r->prompt_tokens;
      completion_tokens += r->completion_tokens;
      std::string finish = r->finish_reason;
      if (tools) {
        engine::ParsedReply parsed = engine::ParseToolCalls(held, syntax);
        if (parsed.tool_calls.empty()) {
          if (!held.empty()) emit(make_chunk(i, held, nullptr));
        } else {
          if (!parsed.content.empty()) emit(make_chunk(i, parsed.content, nullptr));
          json calls = make_chunk(i, "", nullptr);
          calls["choices"][0]["delta"] = {{"tool_calls", ToolCallsJson(parsed.tool_calls, true)}};
          emit(calls);
          if (finish == "stop") finish = "tool_calls";
        }
      }
      json last = make_chunk(i, "", finish);
      // A choice's log probabilities come with its last chunk (clients append them in order).
      if (logprobs) last["choices"][0]["logprobs"] = LogprobsJson(r->logprobs, chat, 0);
      emit(last);
    }
    if (ok) {
      // Always produced (the audit takes the counts from it); the response policy passes it to
      // the client only with stream_options.include_usage.
      json usage = make_chunk(0, "", nullptr);
      usage["choices"] = json::array();
      usage["usage"] = {{"prompt_tokens", prompt_tokens},
                        {"completion_tokens", completion_tokens},
                        {"total_tokens", prompt_tokens + completion_tokens}};
      emit(usage);
    }
    // Read by the stream's writer after Finish (the channel's lock orders them): audited once a
    // detector has seen it (a compromised worker may put another user's data in it), 502.
    if (!ok) st->model_failure = failure;
    ch->Finish(ok ? 0 : -1);
  }).detach();
  StreamToClient(st, ch, res);
}

}  // namespace airlock::server
