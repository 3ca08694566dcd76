// Tool-call parser fuzz target: model output in every supported syntax (the first byte picks
// it). Checks: no crash, every parsed call has a name and arguments that are a JSON object.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string_view>

#include "engine/tool_calls.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  using airlock::engine::ToolCallSyntax;
  const ToolCallSyntax syntax[] = {ToolCallSyntax::kNone, ToolCallSyntax::kQwen,
                                   ToolCallSyntax::kDeepSeek, ToolCallSyntax::kLlama3};
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const auto parsed = airlock::engine::ParseToolCalls(text, syntax[data[0] % 4]);
  for (const auto& call : parsed.tool_calls) {
    if (call.name.empty()) std::abort();
    const auto args = nlohmann::json::parse(call.arguments, nullptr, false);
    if (args.is_discarded() || !args.is_object()) std::abort();
  }
  (void)airlock::engine::DetectToolCallSyntax(text);
  return 0;
}
