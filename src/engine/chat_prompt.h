// Turns a conversation into prompt tokens the way every Airlock front end does it (`run`, `chat`,
// `serve`, `probe`): through the model's own chat template in the sandboxed interpreter, with
// special-token text parsed only where the template wrote it (message content can never become a
// control token), and a single BOS.
#pragma once

#include <vector>

#include "core/chat_message.h"
#include "core/status.h"
#include "engine/model.h"
#include "engine/tokenizer.h"
#include "template/chat.h"

namespace airlock::engine {

// The chat template when the model has one and !no_template (ending with the generation prompt),
// else the messages' text joined by blank lines after the vocabulary's BOS. Errors: the template's
// (kInvalidArgument for raise_exception, kLimitExceeded for caps) and the tokenizer's. `tools`
// (a list of OpenAI tool definitions, or undefined) goes to the template's `tools` variable.
Result<std::vector<TokenId>> EncodeChat(const Model& model, const Tokenizer& tokenizer,
                                        const std::vector<tmpl::ChatMessage>& messages,
                                        bool no_template, const tmpl::Value& tools = tmpl::Value());
// The same for plain messages (the server's and assess's), converted by ToTemplateMessages.
Result<std::vector<TokenId>> EncodeChat(const Model& model, const Tokenizer& tokenizer,
                                        const std::vector<core::ChatMessage>& messages,
                                        bool no_template, const tmpl::Value& tools = tmpl::Value());
// The renderer's messages for plain ones: tool_calls_json parsed into the `tool_calls` list and
// tool_call_id into the message's extra fields, both marked as input (RenderChat marks the rest).
// Errors: kInvalidArgument for tool_calls_json that is not JSON.
Result<std::vector<tmpl::ChatMessage>> ToTemplateMessages(
    const std::vector<core::ChatMessage>& messages);
// The model's chat template source ("" when it has none).
std::string ChatTemplateSource(const Model& model);

}  // namespace airlock::engine
