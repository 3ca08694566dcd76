// The markers that open and close a model's reasoning ("thinking"), as the model itself defines
// them: written by its chat template (Qwen3, DeepSeek R1: "<think>" ... "</think>") or tokens of
// its vocabulary. The gateway splits a local model's output at exactly these markers.
// Thread-safety: pure functions.
#pragma once

#include <string>
#include <string_view>

namespace airlock::engine {

class Tokenizer;

struct ReasoningMarkers {
  std::string open;  // "" when the model has none
  std::string close;
  bool empty() const { return open.empty() || close.empty(); }
  friend bool operator==(const ReasoningMarkers&, const ReasoningMarkers&) = default;
};

// The first known pair whose two markers the chat template writes or the vocabulary holds as
// tokens (`tokenizer` may be null); {} when none. Known pairs, in this order: "<think>" /
// "</think>" (Qwen3, DeepSeek R1, QwQ: the only convention among the models this project has
// fixtures of), "<thinking>" / "</thinking>", "<seed:think>" / "</seed:think>" (ByteDance
// Seed-OSS), "[THINK]" / "[/THINK]" (Mistral Magistral) and "<|begin_of_thought|>" /
// "<|end_of_thought|>". A template that writes the opening marker into
// the generation prompt (the answer then holds only the closing one) needs nothing more: the
// gateway reads everything before a closing marker with no opening one as reasoning
// (policy::ThinkSplitter).
ReasoningMarkers DetectReasoningMarkers(std::string_view chat_template, const Tokenizer* tokenizer);

}  // namespace airlock::engine
