#include "engine/reasoning.h"

#include "engine/tokenizer.h"

namespace airlock::engine {

ReasoningMarkers DetectReasoningMarkers(std::string_view chat_template,
                                        const Tokenizer* tokenizer) {
  static constexpr std::pair<std::string_view, std::string_view> kKnown[] = {
      {"<think>", "</think>"},
      {"<thinking>", "</thinking>"},
      {"<seed:think>", "</seed:think>"},  // ByteDance Seed-OSS
      {"[THINK]", "[/THINK]"},            // Mistral Magistral
      {"<|begin_of_thought|>", "<|end_of_thought|>"},
  };
  for (const auto& [open, close] : kKnown) {
    const bool in_template = chat_template.find(open) != std::string_view::npos &&
                             chat_template.find(close) != std::string_view::npos;
    const bool in_vocabulary =
        tokenizer && tokenizer->Find(open) != kNoToken && tokenizer->Find(close) != kNoToken;
    if (in_template || in_vocabulary) return {std::string(open), std::string(close)};
  }
  return {};
}

}  // namespace airlock::engine
