// Reasoning a client sends back in a multi-turn chat: the reasoning fields of earlier messages
// (IsReasoningFieldName: reasoning_content, reasoning, reasoning_details, thinking, ...) and of
// their content parts, parts of a reasoning type ({"type":"thinking"}), and the reasoning blocks
// of earlier assistant turns' content (<think>, [THINK], ...: policy::ThinkSplitter). It is the
// data class "reasoning" of the request: the request rules block it, redact (remove) it or let
// it pass, and an upstream receives it only like any other class (allowed_data_classes, restrict
// rules' jurisdictions). Reasoning is never stored in the audit's prompt text unless
// `[reasoning] action = "log"`.
// Thread-safety: pure functions on the caller's JSON.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>

#include "policy/transform.h"

namespace airlock::server::internal {

// Whether a field of a message, content part, answer message, delta or choice is reasoning: the
// known names (reasoning_content, reasoning, reasoning_details, reasoning_text, thinking,
// thinking_blocks, thoughts, ...) and, failing closed for names nobody listed yet, any name
// holding "reason", "think" or "thought" in any letter case - except finish_reason,
// stop_reason and native_finish_reason.
bool IsReasoningFieldName(std::string_view name);

// Whether the chat `messages` of `body` carry reasoning: a reasoning field (of a message or of a
// content part) that is not null (a string with a non-blank character, or any other value: fail
// closed), a content part of a reasoning type, or an assistant turn whose content holds a
// reasoning block with a non-blank character (an empty block, as templates render it when
// thinking is off, is not reasoning).
bool RequestHasReasoning(const nlohmann::json& body);

// Removes it: the reasoning fields and parts are erased, reasoning blocks cut out of assistant
// content (string or text parts).
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
