// Reasoning a client sends back in a multi-turn chat: the `reasoning_content` (or `reasoning`)
// field of earlier messages and the <think> blocks of earlier assistant turns' content. It is the
// data class "reasoning" of the request: the request rules block it, redact (remove) it or let
// it pass, and an upstream receives it only like any other class (allowed_data_classes, restrict
// rules' jurisdictions). Reasoning is never stored in the audit's prompt text unless
// `[reasoning] action = "log"`.
// Thread-safety: pure functions on the caller's JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "policy/transform.h"

namespace airlock::server::internal {

// Whether the chat `messages` of `body` carry reasoning: a reasoning field that is not null (a
// string with a non-blank character, or any other value: fail closed), or an assistant turn whose
// content holds a <think> block with a non-blank character (an empty block, as templates render
// it when thinking is off, is not reasoning).
bool RequestHasReasoning(const nlohmann::json& body);

// Removes it: the reasoning fields are erased, <think> blocks cut out of assistant content
// (string or text parts).
void RemoveRequestReasoning(nlohmann::json& body);

// Where reasoning may sit in `body`, as string nodes: whole reasoning fields, and assistant
// content (which holds reasoning only inside <think> blocks).
struct ReasoningCarriers {
  std::set<const nlohmann::json*> fields;
  std::set<const nlohmann::json*> assistant_text;
};
ReasoningCarriers FindReasoningCarriers(const nlohmann::json& body);

// `text` without its reasoning blocks (between `markers`; empty: <think> in any letter case).
std::string WithoutThinkBlocks(const std::string& text, const policy::ThinkMarkers& markers = {});

}  // namespace airlock::server::internal
