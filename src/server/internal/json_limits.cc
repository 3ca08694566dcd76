#include "server/internal/json_limits.h"

#include "core/text.h"

namespace airlock::server::internal {

Result<nlohmann::json> ParseBoundedJson(std::string_view text, std::size_t max_bytes,
                                        std::size_t max_depth) {
  if (text.size() > max_bytes)
    return LimitExceeded("JSON document of " + std::to_string(text.size()) +
                         " bytes exceeds the limit of " + std::to_string(max_bytes));
  if (core::JsonNestingDepth(text, max_depth) > max_depth)
    return LimitExceeded("JSON document nested deeper than " + std::to_string(max_depth) +
                         " levels");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return InvalidArgument("not a JSON document");
  return j;
}

std::string DumpJson(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

}  // namespace airlock::server::internal
