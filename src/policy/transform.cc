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

enum class TagMatch { kNo, kPartial, kOpen, kClose };

bool IsTagBlank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f'; }

// A reasoning tag at `at`: "<think" or "<thinking" (or with '/': closing) in any letter case,
// then '>' directly, or a blank and anything but '<' and '>' up to the '>' (models and templates
// vary: "<THINK>", "<think >", "<think\n>", "<think x=1>", "<thinking>"), the whole tag at most
// kMaxTagLength bytes. "<thinker>" and "<think/>" are not tags.
TagMatch MatchThinkTag(std::string_view s, std::size_t at, std::size_t* length) {
  static constexpr std::size_t kMaxTagLength = 64;
  std::size_t i = at + 1;  // s[at] == '<'
  auto partial_or_no = [&] { return i == s.size() ? TagMatch::kPartial : TagMatch::kNo; };
  const bool closing = i < s.size() && s[i] == '/';
  if (closing) ++i;
  for (char letter : std::string_view("think")) {
    if (i == s.size() || (s[i] | 0x20) != letter) return partial_or_no();
    ++i;
  }
  if (i < s.size() && (s[i] | 0x20) == 'i') {  // "thinking"
    for (char letter : std::string_view("ing")) {
      if (i == s.size() || (s[i] | 0x20) != letter) return partial_or_no();
      ++i;
    }
  }
  if (i == s.size()) return TagMatch::kPartial;
  if (s[i] != '>') {
    if (!IsTagBlank(s[i])) return TagMatch::kNo;
    while (i < s.size() && s[i] != '>') {
      if (s[i] == '<' || i - at >= kMaxTagLength) return TagMatch::kNo;
      ++i;
    }
    if (i == s.size()) return TagMatch::kPartial;
  }
  *length = i + 1 - at;
  return closing ? TagMatch::kClose : TagMatch::kOpen;
}

// `marker` exactly at `at` (kPartial: `s` ends inside a prefix of it).
TagMatch MatchExact(std::string_view s, std::size_t at, std::string_view marker, TagMatch kind,
                    std::size_t* length) {
  std::string_view rest = s.substr(at);
  if (rest.size() < marker.size())
    return marker.substr(0, rest.size()) == rest ? TagMatch::kPartial : TagMatch::kNo;
  if (rest.substr(0, marker.size()) != marker) return TagMatch::kNo;
  *length = marker.size();
  return kind;
}

}  // namespace

ThinkSplitter::Piece ThinkSplitter::Feed(std::string_view chunk) {
  pending_.append(chunk);
  Piece piece;
  const bool exact = !markers_.empty();
  // The bytes a marker can start with.
  const char starts[3] = {exact ? markers_.open[0] : '<', exact ? markers_.close[0] : '<', '\0'};
  std::size_t pos = 0, search = 0;
  auto sink = [&]() -> std::string& {
    if (!decided_) return undecided_;
    return depth_ > 0 ? piece.reasoning : piece.visible;
  };
  while (true) {
    std::size_t at = exact ? pending_.find_first_of(starts, search, 2) : pending_.find('<', search);
    if (at == std::string::npos) {
      sink().append(pending_, pos, std::string::npos);
      pos = pending_.size();
      break;
    }
    std::size_t length = 0;
    TagMatch m = TagMatch::kNo;
    if (exact) {
      m = MatchExact(pending_, at, markers_.close, TagMatch::kClose, &length);
      TagMatch open = MatchExact(pending_, at, markers_.open, TagMatch::kOpen, &length);
      if (m == TagMatch::kNo || (m == TagMatch::kPartial && open == TagMatch::kOpen)) m = open;
      if (m == TagMatch::kClose) length = markers_.close.size();
    } else {
      m = MatchThinkTag(pending_, at, &length);
    }
    if (m == TagMatch::kNo) {
      search = at + 1;
      continue;
    }
    sink().append(pending_, pos, at - pos);
    if (m == TagMatch::kPartial) {  // hold back what could still become a tag
      pos = at;
      break;
    }
    pos = search = at + length;
    if (m == TagMatch::kOpen) {
      if (!decided_) {  // the answer opened its reasoning itself: what came before is answer
        decided_ = true;
        piece.visible += undecided_;
        undecided_.clear();
      }
      released_early_ = false;
      if (depth_ < kMaxDepth) ++depth_;
      continue;
    }
    // A closing marker.
    if (depth_ > 0) {
      --depth_;
    } else if (!decided_) {
      // None opened: the chat template opened the reasoning (DeepSeek R1, QwQ), so everything
      // before this marker is reasoning.
      decided_ = true;
      piece.reasoning += undecided_;
      undecided_.clear();
    } else if (released_early_) {
      // The same, after the held text was released at kMaxUndecided: it reached the caller as
      // answer text.
      released_early_ = false;
      piece.reasoning_released = true;
    } else {
      piece.visible.append(pending_, at, length);  // a stray marker in the answer is text
    }
  }
  pending_.erase(0, pos);
  if (!decided_ && undecided_.size() > kMaxUndecided) {
    decided_ = released_early_ = true;
    piece.visible.insert(0, undecided_);
    undecided_.clear();
  }
  return piece;
}

ThinkSplitter::Piece ThinkSplitter::Flush() {
  Piece piece;
  if (!decided_) {
    piece.visible = std::move(undecided_) + pending_;
  } else {
    (depth_ > 0 ? piece.reasoning : piece.visible) = std::move(pending_);
  }
  undecided_.clear();
  pending_.clear();
  return piece;
}

}  // namespace airlock::policy
