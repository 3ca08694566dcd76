#include "engine/chat_prompt.h"

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

std::string ChatTemplateSource(const Model& model) {
  auto source = model.gguf().GetString("tokenizer.chat_template");
  return source ? std::string(*source) : std::string();
}

}  // namespace airlock::engine
