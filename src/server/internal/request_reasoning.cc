#include "server/internal/request_reasoning.h"

#include <functional>
#include <string_view>

#include "policy/transform.h"

namespace airlock::server::internal {
namespace {

using json = nlohmann::json;

constexpr const char* kReasoningFields[] = {"reasoning_content", "reasoning"};

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

template <typename Json, typename Visit>
void ForEachMessage(Json& body, Visit&& visit) {
  auto messages = body.find("messages");
  if (messages == body.end() || !messages->is_array()) return;
  for (auto& m : *messages)
    if (m.is_object()) visit(m);
}

}  // namespace

bool RequestHasReasoning(const json& body) {
  bool found = false;
  ForEachMessage(body, [&](const json& m) {
    for (const char* field : kReasoningFields) {
      auto f = m.find(field);
      if (f == m.end() || f->is_null()) continue;
      if (!f->is_string() || NonBlank(f->get_ref<const std::string&>())) found = true;
    }
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
    for (const char* field : kReasoningFields) m.erase(field);
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
    for (const char* field : kReasoningFields)
      if (auto f = m.find(field); f != m.end()) add(*f);
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
