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

char AsciiLower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

// An XML-like tag `<name` or `</name` at `at` (name in any letter case), then '>' directly, or a
// blank and anything but '<' and '>' up to the '>' (models and templates vary: "<THINK>",
// "<think >", "<think\n>", "<think x=1>"), the whole tag at most kMaxTagLength bytes. "<thinker>"
// and "<think/>" are not "think" tags.
TagMatch MatchNamedTag(std::string_view s, std::size_t at, std::string_view name,
                       std::size_t* length) {
  static constexpr std::size_t kMaxTagLength = 64;
  std::size_t i = at + 1;  // s[at] == '<'
  const bool closing = i < s.size() && s[i] == '/';
  if (closing) ++i;
  for (char letter : name) {
    if (i == s.size()) return TagMatch::kPartial;
    if (AsciiLower(s[i]) != letter) return TagMatch::kNo;
    ++i;
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

// `marker` exactly at `at` (ASCII letter case ignored when `any_case`); kPartial: `s` ends
// inside a prefix of it.
TagMatch MatchExact(std::string_view s, std::size_t at, std::string_view marker, bool any_case,
                    TagMatch kind, std::size_t* length) {
  std::string_view rest = s.substr(at);
  const std::size_t n = std::min(rest.size(), marker.size());
  for (std::size_t k = 0; k < n; ++k)
    if (any_case ? AsciiLower(rest[k]) != AsciiLower(marker[k]) : rest[k] != marker[k])
      return TagMatch::kNo;
  if (rest.size() < marker.size()) return TagMatch::kPartial;
  *length = marker.size();
  return kind;
}

// The reasoning markers of upstream answers (no model markers known): one row per spelling.
// Rows of one `family` close each other's blocks ("<thinking>" ... "</think>").
struct MarkerSpelling {
  int family;
  bool named_tag;  // `open` is a tag name matched as <name ...> / </name ...> in any case
  bool any_case;
  std::string_view open, close;
  bool closes_unopened;  // a closing marker with no block open ends reasoning the template opened
};
constexpr MarkerSpelling kUpstreamMarkers[] = {
    {0, true, true, "thinking", "", true},  // <thinking> (Claude-style prompts)
    {0, true, true, "think", "", true},     // <think> (DeepSeek R1, Qwen3, QwQ)
    {1, true, true, "reasoning", "", true},
    {2, true, true, "seed:think", "", true},        // ByteDance Seed-OSS
    {3, false, true, "[THINK]", "[/THINK]", true},  // Mistral Magistral
    {4, false, false, "<|begin_of_thought|>", "<|end_of_thought|>", true},
    // gpt-oss harmony: the analysis channel up to its end. "<|end|>" ends any harmony message,
    // so alone it does not make what came before reasoning.
    {5, false, false, "<|channel|>analysis<|message|>", "<|end|>", false},
};

}  // namespace

ThinkSplitter::Hit ThinkSplitter::MatchAt(std::string_view s, std::size_t at) const {
  Hit hit;
  if (!markers_.empty()) {
    // A model's own markers, exactly. A full closing marker wins over a full opening one, either
    // over a prefix of the other (markers may share a prefix).
    std::size_t close_length = 0, open_length = 0;
    TagMatch close = MatchExact(s, at, markers_.close, false, TagMatch::kClose, &close_length);
    TagMatch open = MatchExact(s, at, markers_.open, false, TagMatch::kOpen, &open_length);
    if (close == TagMatch::kClose) return {Hit::kClose, close_length, 0, true};
    if (open == TagMatch::kOpen) return {Hit::kOpen, open_length, 0, true};
    if (close == TagMatch::kPartial || open == TagMatch::kPartial) hit.kind = Hit::kPartial;
    return hit;
  }
  bool partial = false;
  for (const MarkerSpelling& m : kUpstreamMarkers) {
    std::size_t length = 0;
    TagMatch r = TagMatch::kNo;
    if (m.named_tag) {
      if (s[at] == '<') r = MatchNamedTag(s, at, m.open, &length);
    } else {
      r = MatchExact(s, at, m.close, m.any_case, TagMatch::kClose, &length);
      if (r != TagMatch::kClose) {
        TagMatch open = MatchExact(s, at, m.open, m.any_case, TagMatch::kOpen, &length);
        if (open == TagMatch::kOpen || r == TagMatch::kNo) r = open;
      }
    }
    if (r == TagMatch::kPartial) partial = true;
    if (r == TagMatch::kOpen || r == TagMatch::kClose)
      return {r == TagMatch::kOpen ? Hit::kOpen : Hit::kClose, length, m.family, m.closes_unopened};
  }
  if (partial) hit.kind = Hit::kPartial;
  return hit;
}

ThinkSplitter::Piece ThinkSplitter::Feed(std::string_view chunk) {
  pending_.append(chunk);
  Piece piece;
  const bool exact = !markers_.empty();
  // The bytes a marker can start with.
  const std::string starts =
      exact ? std::string{markers_.open[0], markers_.close[0]} : std::string("<[");
  std::size_t pos = 0, search = 0;
  auto sink = [&]() -> std::string& {
    if (!decided_) return undecided_;
    return open_.empty() ? piece.visible : piece.reasoning;
  };
  while (true) {
    std::size_t at = pending_.find_first_of(starts, search);
    if (at == std::string::npos) {
      sink().append(pending_, pos, std::string::npos);
      pos = pending_.size();
      break;
    }
    Hit hit = MatchAt(pending_, at);
    if (hit.kind == Hit::kNone) {
      search = at + 1;
      continue;
    }
    sink().append(pending_, pos, at - pos);
    if (hit.kind == Hit::kPartial) {  // hold back what could still become a marker
      pos = at;
      break;
    }
    pos = search = at + hit.length;
    if (hit.kind == Hit::kOpen) {
      if (!decided_) {  // the answer opened its reasoning itself: what came before is answer
        decided_ = true;
        piece.visible += undecided_;
        undecided_.clear();
      }
      released_early_ = false;
      if (open_.size() < kMaxDepth) open_.push_back(static_cast<std::uint8_t>(hit.family));
      continue;
    }
    // A closing marker.
    if (!open_.empty()) {
      if (open_.back() == hit.family)
        open_.pop_back();
      else
        piece.reasoning.append(pending_, at, hit.length);  // another family's: still reasoning
    } else if (!decided_ && hit.closes_unopened) {
      // None opened: the chat template opened the reasoning (DeepSeek R1, QwQ), so everything
      // before this marker is reasoning.
      decided_ = true;
      piece.reasoning += undecided_;
      undecided_.clear();
    } else if (released_early_ && hit.closes_unopened) {
      // The same, after the held text was released at kMaxUndecided: it reached the caller as
      // answer text.
      released_early_ = false;
      piece.reasoning_released = true;
    } else {
      sink().append(pending_, at, hit.length);  // a stray marker in the answer is text
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
    (open_.empty() ? piece.visible : piece.reasoning) = std::move(pending_);
  }
  undecided_.clear();
  pending_.clear();
  return piece;
}

}  // namespace airlock::policy
