#include "engine/chat_prompt.h"

#include <nlohmann/json.hpp>

namespace airlock::engine {

Result<std::vector<TokenId>> EncodeChat(const Model& model, const Tokenizer& tok,
                                        const std::vector<tmpl::ChatMessage>& messages,
                                        bool no_template, const tmpl::Value& tools) {
  const auto tmpl_source = model.gguf().GetString("tokenizer.chat_template");
  if (no_template || !tmpl_source) {
    std::string text;
    for (const auto& msg : messages) {
      if (!text.empty()) text += "\n\n";
      if (msg.content.is_string()) text += msg.content.str();
    }
    return tok.Encode(text, /*add_special=*/true, /*parse_special=*/false);
  }
  tmpl::ChatOptions options;
  options.add_generation_prompt = true;
  options.tools = tools;
  if (tok.bos() != kNoToken) options.bos_token = std::string(tok.TokenText(tok.bos()));
  if (tok.eos() != kNoToken) options.eos_token = std::string(tok.TokenText(tok.eos()));
  AIRLOCK_ASSIGN_OR_RETURN(tmpl::ChatPrompt rendered,
                           tmpl::RenderChat(*tmpl_source, messages, options));
  std::vector<TextSpan> spans;
  for (const auto& s : rendered.segments) {
    spans.push_back({s.begin, s.end, s.kind == tmpl::SegmentKind::kTemplate});
  }
  // Templates that print bos_token themselves must not get a second BOS from the tokenizer.
  const bool starts_with_bos =
      !options.bos_token.empty() && rendered.text.rfind(options.bos_token, 0) == 0;
  return tok.EncodeSpans(rendered.text, spans, /*add_special=*/!starts_with_bos);
}

Result<std::vector<tmpl::ChatMessage>> ToTemplateMessages(
    const std::vector<core::ChatMessage>& messages) {
  std::vector<tmpl::ChatMessage> out;
  out.reserve(messages.size());
  for (const core::ChatMessage& m : messages) {
    tmpl::ChatMessage cm;
    cm.role = m.role;
    cm.content = tmpl::Value::String(m.content);
    if (!m.tool_calls_json.empty()) {
      AIRLOCK_ASSIGN_OR_RETURN(cm.tool_calls,
                               tmpl::ValueFromJson(m.tool_calls_json, /*mark_as_input=*/true));
    }
    if (!m.tool_call_id.empty()) {
      AIRLOCK_ASSIGN_OR_RETURN(
          cm.extra, tmpl::ValueFromJson(nlohmann::json{{"tool_call_id", m.tool_call_id}}.dump(),
                                        /*mark_as_input=*/true));
    }
    out.push_back(std::move(cm));
  }
  return out;
}

Result<std::vector<TokenId>> EncodeChat(const Model& model, const Tokenizer& tokenizer,
                                        const std::vector<core::ChatMessage>& messages,
                                        bool no_template, const tmpl::Value& tools) {
  AIRLOCK_ASSIGN_OR_RETURN(std::vector<tmpl::ChatMessage> converted, ToTemplateMessages(messages));
  return EncodeChat(model, tokenizer, converted, no_template, tools);
}

std::string ChatTemplateSource(const Model& model) {
  auto source = model.gguf().GetString("tokenizer.chat_template");
  return source ? std::string(*source) : std::string();
}

}  // namespace airlock::engine
