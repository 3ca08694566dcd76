#include "sign/internal/strict_json.h"

#include "core/text.h"

#include <set>
#include <vector>

namespace airlock::sign::internal {

using nlohmann::json;

bool JsonNestingWithinLimit(std::string_view text) {
  return core::JsonNestingDepth(text, kMaxJsonDepth) <= static_cast<std::size_t>(kMaxJsonDepth);
}

Result<json> ParseStrictJson(std::string_view text, const std::string& what) {
  if (text.size() >= 3 && text.compare(0, 3, "\xEF\xBB\xBF") == 0)
    return Corrupt(what + ": starts with a byte-order mark");
  if (!JsonNestingWithinLimit(text))
    return Corrupt(what + ": JSON nested deeper than " + std::to_string(kMaxJsonDepth) + " levels");
  // One key set per open object; the parser reports events in document order.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  auto callback = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!open_objects.empty() && parsed.is_string() &&
            !open_objects.back().insert(parsed.get<std::string>()).second && duplicate.empty())
          duplicate = parsed.get<std::string>();
        break;
      default:
        break;
    }
    return true;
  };
  json j = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false,
                       /*ignore_comments=*/false);
  if (j.is_discarded()) return Corrupt(what + ": not valid JSON");
  if (!duplicate.empty())
    return Corrupt(what + ": duplicate key \"" + duplicate.substr(0, 64) +
                   "\" (a document must have one meaning)");
  return j;
}

Status KnownMembers(const json& obj, std::initializer_list<std::string_view> known,
                    const std::string& where) {
  if (!obj.is_object()) return Status::Ok();
  for (const auto& [key, value] : obj.items()) {
    bool found = false;
    for (std::string_view k : known) found = found || key == k;
    if (!found)
      return Corrupt(where + " has an unknown member \"" + key.substr(0, 64) +
                     "\" (Airlock refuses what it would not check)");
  }
  return Status::Ok();
}

}  // namespace airlock::sign::internal
