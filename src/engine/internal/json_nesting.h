// The deepest nesting of '[' and '{' outside strings in a JSON text, found without parsing it, so
// that hostile input can be refused before a parser or a compiler recurses into it.
#pragma once

#include <algorithm>
#include <string_view>

namespace airlock::engine::internal {

inline int JsonNesting(std::string_view text) {
  int depth = 0, max_depth = 0;
  bool in_string = false, escaped = false;
  for (char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return max_depth;
}

}  // namespace airlock::engine::internal
