#include "server/internal/request_reasoning.h"

#include <functional>
#include <string_view>
#include <utility>
#include <vector>

#include "policy/transform.h"

namespace airlock::server::internal {
namespace {

using json = nlohmann::json;

bool NonBlank(std::string_view s) {
  for (char c : s)
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return true;
  return false;
}

bool IsAssistant(const json& message) {
  auto role = message.find("role");
  return role != message.end() && role->is_string() && *role == "assistant";
}

// The text nodes of an assistant turn's content, in order: the string itself, or the plain
// strings and `text` strings of its parts.
template <typename Json, typename Visit>
void ForEachContentText(Json& message, Visit&& visit) {
  auto content = message.find("content");
  if (content == message.end()) return;
  if (content->is_string()) return visit(*content);
  if (!content->is_array()) return;
  for (auto& part : *content) {
    if (part.is_string()) {
      visit(part);
    } else if (part.is_object()) {
      auto text = part.find("text");
      if (text != part.end() && text->is_string()) visit(*text);
    }
  }
}

// A content part that is reasoning as a whole: {"type": "thinking", ...},
// {"type": "redacted_thinking", ...}, {"type": "reasoning", ...}.
bool IsReasoningPart(const json& part) {
  if (!part.is_object()) return false;
  auto type = part.find("type");
  return type != part.end() && type->is_string() &&
         IsReasoningFieldName(type->get_ref<const std::string&>());
}

// Whether a reasoning field's value carries reasoning: not null, and a string only with a
// non-blank character (any other value: fail closed).
bool CarriesReasoning(const json& value) {
  if (value.is_null()) return false;
  return !value.is_string() || NonBlank(value.get_ref<const std::string&>());
}

// Calls visit(object, key) for each reasoning-named key of a message and of its content parts,
// and visit_part(part) for each content part that is reasoning as a whole.
template <typename Json, typename VisitField, typename VisitPart>
void ForEachReasoningField(Json& message, VisitField&& visit, VisitPart&& visit_part) {
  for (auto it = message.begin(); it != message.end(); ++it)
    if (IsReasoningFieldName(it.key())) visit(message, it.key());
  auto content = message.find("content");
  if (content == message.end() || !content->is_array()) return;
  for (auto& part : *content) {
    if (!part.is_object()) continue;
    if (IsReasoningPart(part)) {
      visit_part(part);
      continue;
    }
    for (auto it = part.begin(); it != part.end(); ++it)
      if (IsReasoningFieldName(it.key())) visit(part, it.key());
  }
}

template <typename Json, typename Visit>
void ForEachMessage(Json& body, Visit&& visit) {
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array()) return;
  for (auto& m : *messages)
    if (m.is_object()) visit(m);
}

}  // namespace

bool IsReasoningFieldName(std::string_view name) {
  std::string lower(name);
  for (char& c : lower)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c + 32);
  // Why an answer stopped is not reasoning.
  for (std::string_view not_reasoning : {"finish_reason", "stop_reason", "native_finish_reason"})
    if (lower == not_reasoning) return false;
  for (std::string_view stem : {"reason", "think", "thought"})
    if (lower.find(stem) != std::string::npos) return true;
  return false;
}

bool RequestHasReasoning(const json& body) {
  bool found = false;
  ForEachMessage(body, [&](const json& m) {
    ForEachReasoningField(
        m,
        [&](const json& object, const std::string& key) {
          found |= CarriesReasoning(object.at(key));
        },
        [&](const json&) { found = true; });
    if (found || !IsAssistant(m)) return;
    // The parts of one turn through one splitter: a tag may be cut between parts.
    policy::ThinkSplitter splitter;
    std::string reasoning;
    ForEachContentText(m, [&](const json& text) {
      reasoning += splitter.Feed(text.get_ref<const std::string&>()).reasoning;
    });
    reasoning += splitter.Flush().reasoning;
    if (NonBlank(reasoning)) found = true;
  });
  return found;
}

void RemoveRequestReasoning(json& body) {
  ForEachMessage(body, [](json& m) {
    std::vector<std::pair<json*, std::string>> fields;
    ForEachReasoningField(
        m, [&](json& object, const std::string& key) { fields.emplace_back(&object, key); },
        [](json&) {});
    for (auto& [object, key] : fields) object->erase(key);
    if (auto content = m.find("content"); content != m.end() && content->is_array()) {
      json kept = json::array();
      for (json& part : *content)
        if (!IsReasoningPart(part)) kept.push_back(std::move(part));
      *content = std::move(kept);
    }
    if (!IsAssistant(m)) return;
    policy::ThinkSplitter splitter;
    json* last = nullptr;
    ForEachContentText(m, [&](json& text) {
      text = splitter.Feed(text.get_ref<const std::string&>()).visible;
      last = &text;
    });
    if (last) *last = last->get<std::string>() + splitter.Flush().visible;
  });
}

ReasoningCarriers FindReasoningCarriers(const json& body) {
  ReasoningCarriers out;
  ForEachMessage(body, [&](const json& m) {
    // Every node of a reasoning field (a scan unit points at a string inside one that is not a
    // string itself).
    std::function<void(const json&)> add = [&](const json& node) {
      out.fields.insert(&node);
      if (node.is_structured())
        for (const json& child : node) add(child);
    };
    ForEachReasoningField(
        m, [&](const json& object, const std::string& key) { add(object.at(key)); },
        [&](const json& part) { add(part); });
    if (IsAssistant(m))
      ForEachContentText(m, [&](const json& t) { out.assistant_text.insert(&t); });
  });
  return out;
}

std::string WithoutThinkBlocks(const std::string& text, const policy::ThinkMarkers& markers) {
  policy::ThinkSplitter splitter(markers);
  std::string visible = splitter.Feed(text).visible;
  return visible + splitter.Flush().visible;
}

}  // namespace airlock::server::internal
