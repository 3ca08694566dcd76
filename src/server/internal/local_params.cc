#include "server/internal/local_params.h"

#include <array>
#include <string_view>

#include "engine/grammar.h"
#include "engine/sampler.h"

namespace airlock::server::internal {
namespace {

using json = nlohmann::json;

RequestError Unsupported(const std::string& param, const std::string& what) {
  return {what + " is not supported for local models.", "unsupported_parameter", param};
}

RequestError InvalidParam(const std::string& param, const std::string& message) {
  return {message, "invalid_value", param};
}

bool Present(const json& body, const char* key) {
  auto it = body.find(key);
  return it != body.end() && !it->is_null();
}

// A string member, or `fallback` when absent or of another type (never throws).
std::string StringMember(const json& object, const char* key, const std::string& fallback) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::optional<double> Number(const json& body, const char* key) {
  if (!Present(body, key) || !body.at(key).is_number()) return std::nullopt;
  return body.at(key).get<double>();
}

std::optional<long long> Integer(const json& body, const char* key) {
  if (!Present(body, key) || !body.at(key).is_number_integer()) return std::nullopt;
  return body.at(key).get<long long>();
}

std::optional<RequestError> CheckResponseFormat(const json& body, LocalParams* out) {
  if (!Present(body, "response_format")) return std::nullopt;
  const json& rf = body.at("response_format");
  auto type = rf.is_object() ? rf.find("type") : rf.end();
  if (!rf.is_object() || type == rf.end() || !type->is_string())
    return InvalidParam("response_format",
                        "'response_format' must be an object with a 'type': text, json_object or "
                        "json_schema.");
  const std::string& t = type->get_ref<const std::string&>();
  if (t == "text") return std::nullopt;
  if (t == "json_object") {
    out->json_object = true;
    return std::nullopt;
  }
  if (t != "json_schema") return Unsupported("response_format", "response_format type '" + t + "'");
  auto spec = rf.find("json_schema");
  if (spec == rf.end() || !spec->is_object())
    return InvalidParam("response_format",
                        "'response_format.json_schema' must be an object with a 'schema'.");
  auto schema = spec->find("schema");
  if (schema == spec->end() || !schema->is_object())
    return InvalidParam("response_format",
                        "'response_format.json_schema.schema' must be a JSON Schema object.");
  out->json_schema = schema->dump();
  // Compiled here for its error; the backend compiles it again (microseconds) for its sampler.
  auto compiled = engine::CompileJsonSchema(out->json_schema);
  if (!compiled)
    return InvalidParam("response_format", "The response_format schema cannot be enforced: " +
                                               compiled.error().message());
  return std::nullopt;
}

std::optional<RequestError> CheckTools(const json& body, bool chat,
                                       engine::ToolCallSyntax tool_syntax, LocalParams* out) {
  bool has_tools = Present(body, "tools");
  if (Present(body, "tool_choice")) {
    const json& tc = body.at("tool_choice");
    if (!tc.is_string())
      return Unsupported("tool_choice", "tool_choice naming a function (forcing a call)");
    const std::string& v = tc.get_ref<const std::string&>();
    if (v == "required") return Unsupported("tool_choice", "tool_choice 'required'");
    if (v != "auto" && v != "none")
      return InvalidParam("tool_choice", "'tool_choice' must be 'auto', 'none' or 'required'.");
    if (v == "none") return std::nullopt;  // the model sees no tools and calls none
  }
  if (!has_tools) return std::nullopt;
  if (!chat) return Unsupported("tools", "tools on /v1/completions");
  const json& tools = body.at("tools");
  if (!tools.is_array())
    return InvalidParam("tools", "'tools' must be an array of function tools.");
  if (tools.empty()) return std::nullopt;
  for (const json& tool : tools) {
    if (!tool.is_object() || StringMember(tool, "type", "") != "function")
      return Unsupported("tools", "a tool whose type is not 'function'");
    auto fn = tool.find("function");
    if (fn == tool.end() || !fn->is_object() || !fn->contains("name") ||
        !(*fn)["name"].is_string() || (*fn)["name"].get_ref<const std::string&>().empty())
      return InvalidParam("tools", "Each tool needs a 'function' with a non-empty 'name'.");
    if (auto p = fn->find("parameters"); p != fn->end() && !p->is_null() && !p->is_object())
      return InvalidParam("tools", "A tool's 'parameters' must be a JSON Schema object.");
  }
  if (tool_syntax == engine::ToolCallSyntax::kNone)
    return Unsupported("tools", "tools for this model (its chat template has no tool-call format)");
  out->tools_json = tools.dump();
  return std::nullopt;
}

std::optional<RequestError> CheckMessages(const json& body) {
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array()) return std::nullopt;
  for (const json& m : *messages) {
    if (!m.is_object()) continue;
    if (auto c = m.find("content"); c != m.end() && c->is_array()) {
      for (const json& part : *c) {
        if (!part.is_object()) continue;
        std::string type = StringMember(part, "type", "text");
        if (type != "text")
          return Unsupported("messages", "a '" + type + "' content part (local models read text)");
      }
    }
    if (auto calls = m.find("tool_calls"); calls != m.end() && !calls->is_null()) {
      if (!calls->is_array())
        return InvalidParam("messages", "A message's 'tool_calls' must be an array.");
      for (const json& call : *calls)
        if (!call.is_object() || !call.contains("function") || !call["function"].is_object())
          return InvalidParam("messages", "Each tool call needs a 'function' object.");
    }
    if (auto id = m.find("tool_call_id"); id != m.end() && !id->is_null() && !id->is_string())
      return InvalidParam("messages", "A message's 'tool_call_id' must be a string.");
  }
  return std::nullopt;
}

}  // namespace

std::optional<RequestError> ParseLocalParams(const json& body, bool chat,
                                             engine::ToolCallSyntax tool_syntax, LocalParams* out) {
  // Parameters local models do not implement: refused by name, never ignored.
  if (Present(body, "logit_bias")) {
    const json& lb = body.at("logit_bias");
    if (!lb.is_object() || !lb.empty()) return Unsupported("logit_bias", "logit_bias");
  }
  if (Present(body, "best_of") && body.at("best_of") != 1) return Unsupported("best_of", "best_of");
  if (Present(body, "echo") && body.at("echo") != false) return Unsupported("echo", "echo");
  if (Present(body, "suffix")) return Unsupported("suffix", "suffix");
  for (const char* key : {"functions", "function_call", "audio", "prediction"})
    if (Present(body, key)) return Unsupported(key, key);
  if (Present(body, "modalities") && body.at("modalities") != json::array({"text"}))
    return Unsupported("modalities", "an output modality other than text");

  engine::OpenAISamplingParams p;
  p.temperature = Number(body, "temperature");
  p.top_p = Number(body, "top_p");
  p.presence_penalty = Number(body, "presence_penalty");
  p.frequency_penalty = Number(body, "frequency_penalty");
  p.n = Integer(body, "n");
  p.seed = Integer(body, "seed");
  if (chat) {
    if (Present(body, "logprobs") && !body.at("logprobs").is_boolean())
      return InvalidParam("logprobs", "'logprobs' must be a boolean.");
    p.logprobs = Present(body, "logprobs") && body.at("logprobs").get<bool>();
    if (Present(body, "top_logprobs")) {
      if (!body.at("top_logprobs").is_number_integer())
        return InvalidParam("top_logprobs", "'top_logprobs' must be an integer from 0 to 20.");
      p.top_logprobs = body.at("top_logprobs").get<long long>();
    }
  } else if (Present(body, "logprobs")) {
    // The legacy form: the number of alternatives (0..5) per token.
    const json& lp = body.at("logprobs");
    if (!lp.is_number_integer() || lp.get<long long>() < 0 || lp.get<long long>() > 5)
      return InvalidParam("logprobs", "'logprobs' must be an integer from 0 to 5.");
    p.logprobs = true;
    p.top_logprobs = lp.get<long long>();
    out->legacy_logprobs = true;
  }
  if (auto e = engine::ValidateOpenAISampling(p, kMaxLocalChoices))
    return RequestError{e->message, "invalid_value", e->param};
  out->n = static_cast<int>(p.n.value_or(1));
  out->logprobs = p.logprobs;
  out->top_logprobs = static_cast<int>(p.top_logprobs.value_or(0));
  out->presence_penalty = p.presence_penalty.value_or(0);
  out->frequency_penalty = p.frequency_penalty.value_or(0);
  if (auto e = CheckResponseFormat(body, out)) return e;
  if (auto e = CheckTools(body, chat, tool_syntax, out)) return e;
  if (chat)
    if (auto e = CheckMessages(body)) return e;
  return std::nullopt;
}

std::optional<RequestError> ParseStreamOptions(const json& body, bool stream, bool* include_usage) {
  *include_usage = false;
  if (!Present(body, "stream_options")) return std::nullopt;
  const json& so = body.at("stream_options");
  if (!stream)
    return InvalidParam("stream_options", "'stream_options' is only allowed with 'stream: true'.");
  if (!so.is_object()) return InvalidParam("stream_options", "'stream_options' must be an object.");
  if (auto iu = so.find("include_usage"); iu != so.end() && !iu->is_null()) {
    if (!iu->is_boolean())
      return InvalidParam("stream_options", "'stream_options.include_usage' must be a boolean.");
    *include_usage = iu->get<bool>();
  }
  return std::nullopt;
}

}  // namespace airlock::server::internal
