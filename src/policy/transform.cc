#include "policy/transform.h"

#include <algorithm>

namespace airlock::policy {
namespace {

std::string UpperClassName(DataClass c) {
  std::string s(DataClassName(c));
  for (char& ch : s)
    if (ch >= 'a' && ch <= 'z') ch = static_cast<char>(ch - 32);
  return s;
}

// Length of the longest suffix of `s` starting at a '[' that is a proper prefix of a placeholder.
// Placeholders are "[" + [A-Z_0-9]+ + "]".
std::size_t HeldSuffix(std::string_view s, std::size_t max_len) {
  if (max_len == 0) return 0;
  std::size_t start = s.size() > max_len ? s.size() - max_len : 0;
  for (std::size_t i = start; i < s.size(); ++i) {
    if (s[i] != '[') continue;
    bool ok = true;
    for (std::size_t j = i + 1; j < s.size(); ++j) {
      char c = s[j];
      if (!((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
        ok = false;
        break;
      }
    }
    if (ok) return s.size() - i;
  }
  return 0;
}

}  // namespace

std::string Pseudonymizer::Apply(std::string_view text, const std::vector<Match>& matches,
                                 const std::map<DataClass, Action>& actions) {
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (const Match& m : matches) {
    if (m.begin < pos || m.end > text.size()) continue;  // defensive: overlapping or stale
    auto it = actions.find(m.data_class);
    Action a = it == actions.end() ? Action::kAllow : it->second;
    if (a != Action::kRedact && a != Action::kPseudonymize) continue;
    out.append(text.substr(pos, m.begin - pos));
    std::string original(text.substr(m.begin, m.end - m.begin));
    if (a == Action::kRedact) {
      out += "[REDACTED_" + UpperClassName(m.data_class) + "]";
    } else {
      auto known = by_original_.find(original);
      std::string placeholder;
      if (known != by_original_.end()) {
        placeholder = known->second;
      } else {
        placeholder = "[" + UpperClassName(m.data_class) + "_" +
                      std::to_string(++counters_[m.data_class]) + "]";
        by_original_[original] = placeholder;
        originals_[placeholder] = original;
        max_placeholder_len_ = std::max(max_placeholder_len_, placeholder.size());
      }
      out += placeholder;
    }
    pos = m.end;
  }
  out.append(text.substr(pos));
  return out;
}

std::string Pseudonymizer::Restore(std::string_view text) const {
  if (originals_.empty()) return std::string(text);
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t open = text.find('[', pos);
    if (open == std::string_view::npos) break;
    std::size_t close = text.find(']', open);
    if (close != std::string_view::npos && close - open < max_placeholder_len_) {
      auto it = originals_.find(std::string(text.substr(open, close - open + 1)));
      if (it != originals_.end()) {
        out.append(text.substr(pos, open - pos));
        out += it->second;
        pos = close + 1;
        continue;
      }
    }
    out.append(text.substr(pos, open + 1 - pos));
    pos = open + 1;
  }
  out.append(text.substr(pos));
  return out;
}

std::string StreamRestorer::Feed(std::string_view chunk) {
  pending_.append(chunk);
  std::size_t held = HeldSuffix(pending_, p_.max_placeholder_len_);
  std::string emit = p_.Restore(std::string_view(pending_).substr(0, pending_.size() - held));
  pending_.erase(0, pending_.size() - held);
  return emit;
}

std::string StreamRestorer::Flush() {
  std::string emit = p_.Restore(pending_);
  pending_.clear();
  return emit;
}

namespace {

// A reasoning tag at `at`: "<think>" or, when `closing`, "</think>", in any letter case and with
// spaces or tabs before the '>' (models and templates vary: "<THINK>", "<think >").
enum class TagMatch { kNo, kPartial, kFull };
TagMatch MatchThinkTag(std::string_view s, std::size_t at, bool closing, std::size_t* length) {
  static constexpr std::size_t kMaxTagLength = 40;
  std::size_t i = at;
  auto need = [&](auto ok) {
    if (i == s.size()) return TagMatch::kPartial;
    if (!ok(s[i])) return TagMatch::kNo;
    ++i;
    return TagMatch::kFull;
  };
  TagMatch m = need([](char c) { return c == '<'; });
  if (m != TagMatch::kFull) return m;
  if (closing && (m = need([](char c) { return c == '/'; })) != TagMatch::kFull) return m;
  for (char letter : std::string_view("think")) {
    m = need([letter](char c) { return (c | 0x20) == letter; });
    if (m != TagMatch::kFull) return m;
  }
  while (i < s.size() && (s[i] == ' ' || s[i] == '\t')) {
    if (++i - at > kMaxTagLength) return TagMatch::kNo;
  }
  if ((m = need([](char c) { return c == '>'; })) != TagMatch::kFull) return m;
  *length = i - at;
  return TagMatch::kFull;
}

// `marker` exactly at `at` (kPartial: `s` ends inside a prefix of it).
TagMatch MatchExact(std::string_view s, std::size_t at, std::string_view marker,
                    std::size_t* length) {
  std::string_view rest = s.substr(at);
  if (rest.size() < marker.size())
    return marker.substr(0, rest.size()) == rest ? TagMatch::kPartial : TagMatch::kNo;
  if (rest.substr(0, marker.size()) != marker) return TagMatch::kNo;
  *length = marker.size();
  return TagMatch::kFull;
}

}  // namespace

ThinkSplitter::Piece ThinkSplitter::Feed(std::string_view chunk) {
  pending_.append(chunk);
  Piece piece;
  std::size_t pos = 0;
  std::size_t search = 0;
  while (true) {
    std::string& sink = in_think_ ? piece.reasoning : piece.visible;
    const bool exact = !markers_.empty();
    const std::string& marker = in_think_ ? markers_.close : markers_.open;
    std::size_t at = pending_.find(exact ? marker[0] : '<', search);
    if (at == std::string::npos) {
      sink.append(pending_, pos, std::string::npos);
      pos = pending_.size();
      break;
    }
    std::size_t length = 0;
    TagMatch m = exact ? MatchExact(pending_, at, marker, &length)
                       : MatchThinkTag(pending_, at, in_think_, &length);
    if (m == TagMatch::kFull) {
      sink.append(pending_, pos, at - pos);
      pos = search = at + length;
      in_think_ = !in_think_;
    } else if (m == TagMatch::kPartial) {  // hold back what could still become a tag
      sink.append(pending_, pos, at - pos);
      pos = at;
      break;
    } else {
      search = at + 1;
    }
  }
  pending_.erase(0, pos);
  return piece;
}

ThinkSplitter::Piece ThinkSplitter::Flush() {
  Piece piece;
  (in_think_ ? piece.reasoning : piece.visible) = std::move(pending_);
  pending_.clear();
  return piece;
}

}  // namespace airlock::policy
