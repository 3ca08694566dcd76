#include "template/chat.h"

namespace airlock::tmpl {
namespace {

Value MarkDepth(const Value& v, int depth) {
  if (depth > 128) return Value::None();
  switch (v.kind()) {
    case Value::Kind::kString:
      return Value::String(v.str(), true);
    case Value::Kind::kList: {
      std::vector<Value> items;
      items.reserve(v.items().size());
      for (const Value& x : v.items()) items.push_back(MarkDepth(x, depth + 1));
      return Value::List(std::move(items));
    }
    case Value::Kind::kDict: {
      Value d = Value::Dict(/*keys_are_input=*/true);
      for (const auto& [k, x] : v.entries()) d.Set(k, MarkDepth(x, depth + 1));
      return d;
    }
    default:
      return v;
  }
}

}  // namespace

Value MarkAsInput(const Value& v) { return MarkDepth(v, 0); }

Result<ChatPrompt> RenderChat(std::string_view template_source,
                              const std::vector<ChatMessage>& messages,
                              const ChatOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(Template t,
                           Template::Parse(std::string(template_source), options.parse));
  return RenderChat(t, messages, options);
}

Result<ChatPrompt> RenderChat(const Template& tmpl, const std::vector<ChatMessage>& messages,
                              const ChatOptions& options) {
  Value list = Value::List();
  for (const ChatMessage& m : messages) {
    // Keys of a message are the template's vocabulary ("role", "content"), not input.
    Value msg = Value::Dict();
    msg.Set("role", Value::String(m.role, true));
    msg.Set("content", MarkAsInput(m.content));
    if (m.reasoning_content)
      msg.Set("reasoning_content", Value::String(*m.reasoning_content, true));
    if (!m.tool_calls.is_undefined()) msg.Set("tool_calls", MarkAsInput(m.tool_calls));
    for (const auto& [k, v] : m.extra.entries()) msg.Set(k, MarkAsInput(v));
    list.Append(std::move(msg));
  }
  Value vars = Value::Dict();
  vars.Set("messages", list);
  vars.Set("add_generation_prompt", Value::Bool(options.add_generation_prompt));
  vars.Set("bos_token", Value::String(options.bos_token));
  vars.Set("eos_token", Value::String(options.eos_token));
  if (!options.tools.is_undefined()) vars.Set("tools", MarkAsInput(options.tools));
  for (const auto& [k, v] : options.extra_variables.entries()) vars.Set(k, v);

  AIRLOCK_ASSIGN_OR_RETURN(Rendered r, tmpl.Render(vars, options.render));
  ChatPrompt p;
  p.text = std::move(r.text);
  std::size_t pos = 0;
  for (const InputSpan& s : r.input) {
    if (s.begin < pos || s.end > p.text.size() || s.begin >= s.end)
      return Internal("template: chat: inconsistent input marks");
    if (s.begin > pos) p.segments.push_back({SegmentKind::kTemplate, pos, s.begin});
    if (!p.segments.empty() && p.segments.back().kind == SegmentKind::kContent &&
        p.segments.back().end == s.begin)
      p.segments.back().end = s.end;
    else
      p.segments.push_back({SegmentKind::kContent, s.begin, s.end});
    pos = s.end;
  }
  if (pos < p.text.size()) p.segments.push_back({SegmentKind::kTemplate, pos, p.text.size()});
  return p;
}

Result<std::vector<ChatMessage>> ChatMessagesFromJson(std::string_view json) {
  AIRLOCK_ASSIGN_OR_RETURN(Value v, ValueFromJson(json, /*mark_as_input=*/false));
  if (!v.is_list()) return InvalidArgument("template: chat: messages JSON must be an array");
  std::vector<ChatMessage> out;
  for (std::size_t i = 0; i < v.items().size(); ++i) {
    const Value& m = v.items()[i];
    const Value* role = m.Find("role");
    if (!m.is_dict() || !role || !role->is_string())
      return InvalidArgument("template: chat: message " + std::to_string(i) +
                             " has no string \"role\"");
    ChatMessage cm;
    cm.role = role->str();
    const Value* content = m.Find("content");
    cm.content = content ? *content : Value::None();
    const Value* reasoning = m.Find("reasoning_content");
    if (reasoning && reasoning->is_string()) cm.reasoning_content = reasoning->str();
    const Value* calls = m.Find("tool_calls");
    if (calls && !calls->is_none()) cm.tool_calls = *calls;
    for (const auto& [k, x] : m.entries()) {
      if (k == "role" || k == "content" || k == "reasoning_content" || k == "tool_calls") continue;
      if (cm.extra.is_undefined()) cm.extra = Value::Dict();
      cm.extra.Set(k, x);
    }
    out.push_back(std::move(cm));
  }
  return out;
}

}  // namespace airlock::tmpl
