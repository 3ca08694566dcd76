#include "server/internal/policy_apply.h"

#include <algorithm>

#include "server/internal/json_limits.h"

namespace airlock::server::internal {

RequestState::~RequestState() {
  if (!settled && settle_unsettled) settle_unsettled(*this);
  if (on_release) on_release();
}

void RequestState::TakeUsage(const json& usage) {
  auto count = [&](const char* key, std::int64_t implausible) -> std::int64_t {
    auto it = usage.find(key);
    if (it == usage.end() || !it->is_number()) return -1;
    if (it->is_number_float()) {
      double d = it->get<double>();
      return d > static_cast<double>(std::int64_t{1} << 40) ? implausible : -1;
    }
    std::int64_t v = IntegerField(usage, key, -2);
    return v == -2 ? (it->is_number_unsigned() ? implausible : -1) : v;
  };
  prompt_tokens = count("prompt_tokens", prompt_estimate);
  completion_tokens = count("completion_tokens", completion_reserved);
}

void RequestState::SettleCounts(std::int64_t output_estimate) {
  if (prompt_tokens < 0) prompt_tokens = prompt_estimate;
  if (completion_tokens < 0) completion_tokens = output_estimate;
  completion_tokens = std::max(completion_tokens, streamed_pieces);
}

bool RequestState::ChoiceFinished(int index) const {
  auto it = choices.find(index);
  return it != choices.end() && it->second.finished;
}

std::string RequestState::HoldBack(int index, const std::string& field, std::string_view text) {
  // Each held field may hold up to 64 KiB; a hostile upstream spreading text over many choices
  // and tool-call indices must not multiply that without bound.
  constexpr std::size_t kMaxHeldFields = 64;
  if (held.size() >= kMaxHeldFields && !held.count({index, field})) {
    response_blocked = true;
    response_block_reason = "more than 64 tool-call/reasoning fields held back at once";
    return "";
  }
  ChoiceState& f = held[{index, field}];
  f.unscanned += text;
  return ReleaseScanned(f, /*final=*/false);
}

void RequestState::FlushHeld(int index, json& delta) {
  for (auto& [key, f] : held) {
    if (key.first != index || response_blocked) continue;
    std::string rest = ReleaseScanned(f, /*final=*/true);
    if (rest.empty() || response_blocked) continue;
    if (key.second == "reasoning") {
      auto keep = ProcessReasoningField(rest);
      if (!keep) continue;
      auto r = delta.find("reasoning_content");
      delta["reasoning_content"] =
          (r != delta.end() && r->is_string() ? r->get<std::string>() : std::string()) + *keep;
      continue;
    }
    if (key.second == "fcall" || key.second.rfind("field:", 0) == 0) {
      PutHeldText(delta, key.second, rest);
      continue;
    }
    std::int64_t tindex = std::stoll(key.second.substr(5));
    json& tcs = delta["tool_calls"];
    if (!tcs.is_array()) tcs = json::array();
    json* target = nullptr;
    for (json& tc : tcs)
      if (tc.is_object() && IntegerField(tc, "index", -1, internal::kMaxChoices) == tindex &&
          tc.contains("function") && tc["function"].is_object())
        target = &tc;
    if (!target) {
      tcs.push_back({{"index", tindex}, {"function", {{"arguments", ""}}}});
      target = &tcs.back();
    }
    json& a = (*target)["function"]["arguments"];
    a = (a.is_string() ? a.get<std::string>() : std::string()) + rest;
  }
}

void RequestState::PutHeldText(json& delta, const std::string& key, const std::string& text) {
  if (key == "fcall") {
    json& fc = delta["function_call"];
    if (!fc.is_object()) fc = json::object();
    json& a = fc["arguments"];
    a = (a.is_string() ? a.get<std::string>() : std::string()) + text;
    return;
  }
  if (text.empty()) return;  // nothing released yet: the field is left out of this chunk
  std::string name = key.substr(6);
  std::string value = text;
  if (name == "reasoning") {
    auto keep = ProcessReasoningField(text);
    if (!keep) return;
    value = *keep;
  }
  json& f = delta[name];
  f = (f.is_string() ? f.get<std::string>() : std::string()) + value;
}

std::set<int> RequestState::HeldIndices() const {
  std::set<int> out;
  for (const auto& [key, f] : held)
    if (!f.unscanned.empty()) out.insert(key.first);
  return out;
}

RequestState::ChoiceState& RequestState::Choice(int index) {
  ChoiceState& c = choices[index];
  if (!c.restorer) {
    c.restorer = std::make_unique<policy::StreamRestorer>(pseudonymizer);
    c.splitter = policy::ThinkSplitter(think_markers);
  }
  return c;
}

std::string RequestState::ReleaseScanned(ChoiceState& c, bool final) {
  if (!detectors || response_blocked) {
    std::string all;
    if (!response_blocked) all.swap(c.unscanned);
    c.unscanned.clear();
    c.fed = 0;
    return all;
  }
  std::vector<policy::Match> matches;  // offsets into c.unscanned
  std::size_t emit = 0;
  if (final && !c.scanner) {
    // A whole text (not streamed): one scan.
    matches = detectors->Scan(c.unscanned);
    emit = c.unscanned.size();
  } else {
    if (!final && c.unscanned.size() < c.feed_at) return "";
    if (!c.scanner)
      c.scanner = std::make_unique<policy::StreamScanner>(*detectors, StreamOptions());
    std::vector<policy::Match> found = c.scanner->Feed(std::string_view(c.unscanned).substr(c.fed));
    c.fed = c.unscanned.size();
    if (final) {
      std::vector<policy::Match> rest = c.scanner->Finish();
      found.insert(found.end(), rest.begin(), rest.end());
    }
    c.pending.insert(c.pending.end(), found.begin(), found.end());
    const std::size_t size = c.unscanned.size();
    emit = final ? size : std::min(size, c.scanner->safe_to_release() - c.released);
    while (emit > 0 && emit < size &&
           (static_cast<unsigned char>(c.unscanned[emit]) & 0xC0) == 0x80)
      --emit;                                 // never cut a UTF-8 sequence
    for (const policy::Match& m : c.pending)  // nor a finding (the scanner never asks for it)
      if (m.begin < c.released + emit && m.end > c.released + emit) emit = m.begin - c.released;
    std::vector<policy::Match> later;
    for (policy::Match& m : c.pending) {
      if (m.begin < c.released + emit) {
        m.begin -= c.released;
        m.end -= c.released;
        matches.push_back(std::move(m));
      } else {
        later.push_back(std::move(m));
      }
    }
    c.pending = std::move(later);
  }
  const std::size_t held = c.unscanned.size() - emit;
  if (!final && held > kMaxResponseHoldback) {
    BlockUnredactable("a possible match longer than 64 KiB (held back, never sent)");
    c.unscanned.clear();
    c.fed = 0;
    return "";
  }
  c.feed_at = held > 2 * kResponseHoldback ? std::min(2 * held, kMaxResponseHoldback + 1) : 0;
  std::set<policy::DataClass> found;
  for (const policy::Match& m : matches) found.insert(m.data_class);
  std::string out = c.unscanned.substr(0, emit);
  c.unscanned.erase(0, emit);
  c.fed -= std::min(c.fed, emit);
  c.released += emit;
  if (final) {  // text after the end (a hostile upstream) starts a stream of its own
    c.feed_at = 0;
    c.scanner.reset();
    c.pending.clear();
    c.fed = 0;
    c.released = 0;
  }
  if (matches.empty()) return out;
  policy::Verdict v =
      policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
  if (v.blocked) {
    response_blocked = true;
    response_block_reason = v.reason;
    c.unscanned.clear();
    return "";
  }
  for (const auto& [cls, a] : v.actions)
    response_actions.insert("response:" + std::string(policy::DataClassName(cls)) + ":" +
                            std::string(policy::ActionName(a)));
  policy::Pseudonymizer redactor;  // only kRedact actions: nothing to remember
  return redactor.Apply(out, matches, v.actions);
}

void RequestState::BlockUnredactable(const std::string& what) {
  if (response_blocked) return;
  response_blocked = true;
  response_unredactable = true;
  response_block_reason = what;
}

void RequestState::CheckFixedText(const std::string& text, const char* what) {
  if (!detectors || response_blocked) return;
  std::vector<policy::Match> matches = detectors->Scan(text);
  if (matches.empty()) return;
  std::set<policy::DataClass> found;
  for (const auto& m : matches) found.insert(m.data_class);
  policy::Verdict v =
      policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
  bool acted = v.blocked;
  for (const auto& [cls, a] : v.actions)
    if (a != policy::Action::kAllow) acted = true;
  if (acted)
    BlockUnredactable(std::string(policy::DataClassName(*found.begin())) + " in " + what +
                      " of the upstream's answer, which cannot be redacted");
}

void RequestState::ScanOutputFields(json& node, bool top) {
  if (!detectors || response_blocked) return;
  if (node.is_number()) {
    std::string text = internal::NumberScanText(node);
    if (std::count_if(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) >= 7)
      CheckFixedText(text, "a number");
    return;
  }
  if (node.is_string()) {
    const std::string& text = node.get_ref<const std::string&>();
    std::vector<policy::Match> matches = detectors->Scan(text);
    if (matches.empty()) return;
    std::set<policy::DataClass> found;
    for (const auto& m : matches) found.insert(m.data_class);
    policy::Verdict v =
        policy::DecideResponse(*policy, std::vector<policy::DataClass>(found.begin(), found.end()));
    if (v.blocked) {
      response_blocked = true;
      response_block_reason = v.reason;
      node = "";
      return;
    }
    for (const auto& [cls, a] : v.actions)
      response_actions.insert("response:" + std::string(policy::DataClassName(cls)) + ":" +
                              std::string(policy::ActionName(a)));
    policy::Pseudonymizer redactor;
    node = redactor.Apply(text, matches, v.actions);
  } else if (node.is_array()) {
    for (json& e : node) ScanOutputFields(e, false);
  } else if (node.is_object()) {
    for (auto it = node.begin(); it != node.end(); ++it) {
      CheckFixedText(it.key(), "an object key");
      if (top && it.key() == "content") {
        if (!it->is_string() && !it->is_null()) BlockUnredactable("non-string content");
        continue;  // scanned, split and restored by ProcessText
      }
      ScanOutputFields(*it, false);
    }
  }
}

void RequestState::ScanEnvelope(json& doc, bool chat_shape) {
  if (!doc.is_object()) return ScanOutputFields(doc, false);
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    CheckFixedText(it.key(), "an object key");
    if (it.key() != "choices" || !it->is_array()) {
      ScanOutputFields(*it, false);
      continue;
    }
    for (json& c : *it) {
      if (!c.is_object()) {
        ScanOutputFields(c, false);
        continue;
      }
      for (auto f = c.begin(); f != c.end(); ++f) {
        CheckFixedText(f.key(), "an object key");
        const std::string& k = f.key();
        if (chat_shape && (k == "message" || k == "delta") && f->is_object())
          continue;  // ScanOutputFields and ProcessText
        if (!chat_shape && k == "text") {
          if (!f->is_string() && !f->is_null()) BlockUnredactable("non-string text");
          continue;  // ProcessText
        }
        ScanOutputFields(*f, false);
      }
    }
  }
}

std::string RequestState::ProcessText(int index, std::string_view raw, bool whole) {
  ChoiceState& c = Choice(index);
  c.unscanned += raw;
  std::string scanned = ReleaseScanned(c, /*final=*/whole);
  std::string_view text = scanned;
  std::string visible(text);
  // The splitter runs in every mode so that reasoning is recorded as a data class; only
  // strip/log (or a rule that redacts reasoning) take it out of what the client sees.
  auto piece = c.splitter.Feed(text);
  if (!piece.reasoning.empty()) NoteReasoning();
  if (response_blocked) return "";
  if (!ShowsReasoning()) {
    reasoning_text += piece.reasoning;
    visible = std::move(piece.visible);
  }
  std::string out = c.restorer->Feed(visible);
  c.visible += out;
  return out;
}

std::string RequestState::FinishChoice(int index) {
  ChoiceState& c = Choice(index);
  if (c.finished) return "";
  c.finished = true;
  std::string out;
  std::string rest = ReleaseScanned(c, /*final=*/true);
  auto piece = c.splitter.Feed(rest);
  auto last = c.splitter.Flush();
  if (!piece.reasoning.empty() || !last.reasoning.empty()) NoteReasoning();
  if (response_blocked) return "";
  if (!ShowsReasoning()) {
    reasoning_text += piece.reasoning + last.reasoning;
    out = c.restorer->Feed(piece.visible);
    out += c.restorer->Feed(last.visible);
  } else {
    out = c.restorer->Feed(rest);
  }
  out += c.restorer->Flush();
  c.visible += out;
  return out;
}

std::optional<std::string> RequestState::ProcessReasoningField(std::string_view text) {
  if (!text.empty()) NoteReasoning();
  if (response_blocked) return std::nullopt;
  std::string restored = pseudonymizer.Restore(text);
  if (ShowsReasoning()) return restored;
  reasoning_text += restored;
  return std::nullopt;
}

void RequestState::NoteReasoning() {
  if (produced_reasoning) return;  // decided with the first piece
  produced_reasoning = true;
  if (!policy) return;
  policy::Verdict v = policy::DecideResponse(*policy, {policy::DataClass::kReasoning});
  if (v.blocked) {
    if (!response_blocked) {
      response_blocked = true;
      response_block_reason = v.reason;
    }
    return;
  }
  if (reasoning_withheld) response_actions.insert("response:reasoning:redact");
}

bool ReasoningRuleWithholds(const policy::Policy& policy) {
  policy::Verdict v = policy::DecideResponse(policy, {policy::DataClass::kReasoning});
  auto a = v.actions.find(policy::DataClass::kReasoning);
  return v.blocked || (a != v.actions.end() && a->second == policy::Action::kRedact);
}

std::string RequestState::ResponseText() const {
  std::string all;
  for (const auto& [i, c] : choices) all += c.visible;
  return all;
}
namespace {

// Bytes of the blank or invisible character at `s[pos]` (0 if there is none): ASCII blanks and
// controls, no-break and other Unicode spaces, zero-width characters, soft hyphen, word joiner,
// BOM, Hangul fillers. What a field may be padded with at a cut without the model noticing.
std::size_t SeparatorAt(std::string_view s, std::size_t pos) {
  auto byte = [&](std::size_t i) { return static_cast<unsigned char>(s[i]); };
  unsigned char c = byte(pos);
  if (c <= 0x20 || c == 0x7F) return 1;
  if (c == 0xC2 && pos + 1 < s.size())
    return byte(pos + 1) == 0xA0 || byte(pos + 1) == 0xAD || byte(pos + 1) == 0x85 ? 2 : 0;
  if (pos + 2 >= s.size()) return 0;
  unsigned char c1 = byte(pos + 1), c2 = byte(pos + 2);
  if (c == 0xE2 && c1 == 0x80 && (c2 <= 0x8F || (c2 >= 0xA8 && c2 <= 0xAF))) return 3;
  if (c == 0xE2 && c1 == 0x81 && c2 >= 0x9F && c2 <= 0xAF) return 3;
  if (c == 0xE3 && ((c1 == 0x80 && c2 == 0x80) || (c1 == 0x85 && c2 == 0xA4))) return 3;
  if (c == 0xEF && ((c1 == 0xBB && c2 == 0xBF) || (c1 == 0xBE && c2 == 0xA0))) return 3;
  if (c == 0xE1 && ((c1 == 0x85 && (c2 == 0x9F || c2 == 0xA0)) || (c1 == 0x9A && c2 == 0x80)))
    return 3;
  return 0;
}

std::size_t LeadingSeparators(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    std::size_t n = SeparatorAt(s, i);
    if (n == 0) break;
    i += n;
  }
  return i;
}

std::size_t TrailingSeparators(std::string_view s, std::size_t floor) {
  std::size_t end = s.size();
  while (end > floor) {
    std::size_t n = 0;
    for (std::size_t len : {1u, 2u, 3u})
      if (end >= floor + len && SeparatorAt(s, end - len) == len) {
        n = len;
        break;
      }
    if (n == 0) break;
    end -= n;
  }
  return s.size() - end;
}

struct Field {
  std::size_t unit;
  std::size_t offset;  // of the field in its unit's joined text
  std::string_view text;
};

// One stretch of the arranged text: bytes [t_begin, t_end) are field bytes [field_off, ...) of
// field `field`, an elision mark (field == kMark) standing for the middle of a long field, or a
// group separator read at a cut between two digit groups (field == kGlue; it belongs to no field).
struct Segment {
  static constexpr std::size_t kMark = static_cast<std::size_t>(-1);
  static constexpr std::size_t kGlue = static_cast<std::size_t>(-2);
  std::size_t t_begin, t_end, field, field_off;
};

std::size_t Utf8Back(std::string_view s, std::size_t i) {
  while (i > 0 && i < s.size() && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

}  // namespace

std::vector<CrossFieldMatch> FindCrossFieldMatches(
    const policy::DetectorSet& detectors, const std::vector<ScanUnit>& units,
    const std::vector<std::string>& joined,
    const std::vector<std::vector<policy::Match>>& unit_matches) {
  std::vector<Field> fields;
  for (std::size_t u = 0; u < units.size(); ++u) {
    if (!units[u].model_text) continue;
    std::size_t offset = 0;
    for (const json* part : units[u].parts) {
      std::size_t size = part->get_ref<const std::string&>().size();
      if (size) fields.push_back({u, offset, std::string_view(joined[u]).substr(offset, size)});
      offset += size;
    }
  }
  std::vector<CrossFieldMatch> out;
  if (fields.size() < 2) return out;
  bool any_padding = false, several_units = false;
  for (const Field& f : fields) {
    if (SeparatorAt(f.text, 0) || TrailingSeparators(f.text, 0)) any_padding = true;
    if (f.unit != fields[0].unit) several_units = true;
  }
  constexpr std::size_t kWindow = kCrossFieldWindow;
  constexpr std::string_view kMark = "\n\n";
  std::string text;
  std::vector<Segment> segments;
  for (bool reversed : {false, true}) {
    // Reversing the parts of one unit only is not a reading order any template uses.
    if (reversed && !several_units) continue;
    // Trimmed, and glued: trimmed with the number's group separator put back at a cut between
    // two digit groups ("4111 1111" + "1111 1111" reads "4111 1111 1111 1111", not
    // "4111 11111111 1111", which no grouped-number rule accepts).
    for (int mode : {0, 1, 2}) {
      const bool trimmed = mode >= 1, glued = mode == 2;
      if (mode == 1 && !any_padding) continue;  // the same text as untrimmed
      text.clear();
      segments.clear();
      bool any_glue = false;
      std::string_view previous;  // the last field's text as placed
      for (std::size_t n = 0; n < fields.size(); ++n) {
        std::size_t k = reversed ? fields.size() - 1 - n : n;
        std::string_view view = fields[k].text;
        std::size_t from = 0, to = view.size();
        if (trimmed) {
          from = LeadingSeparators(view);
          to -= TrailingSeparators(view, from);
        }
        if (to <= from) continue;
        if (glued) {
          std::string glue = policy::GroupSeparatorAtCut(
              previous, view.substr(from, std::min(to - from, kWindow)));
          if (!glue.empty()) {
            segments.push_back({text.size(), text.size() + glue.size(), Segment::kGlue, 0});
            text.append(glue);
            any_glue = true;
          }
        }
        previous = view.substr(from, to - from);
        if (previous.size() > kWindow) previous = previous.substr(previous.size() - kWindow);
        auto add = [&](std::size_t b, std::size_t e) {
          segments.push_back({text.size(), text.size() + (e - b), k, b});
          text.append(view.substr(b, e - b));
        };
        if (to - from <= 2 * kWindow + 64) {
          add(from, to);
          continue;
        }
        std::size_t head_end = Utf8Back(view, from + kWindow);
        std::size_t tail_begin = Utf8Back(view, to - kWindow);
        add(from, head_end);
        segments.push_back({text.size(), text.size() + kMark.size(), Segment::kMark, 0});
        text.append(kMark);
        add(tail_begin, to);
      }
      if (segments.size() < 2 || (glued && !any_glue)) continue;
      std::size_t first_seg = 0;
      for (const policy::Match& m : detectors.Scan(text)) {
        while (first_seg < segments.size() && segments[first_seg].t_end <= m.begin) ++first_seg;
        CrossFieldMatch cross{m.data_class, m.rule, text.substr(m.begin, m.end - m.begin), {}};
        bool marked = false;
        std::size_t distinct = 0, last_field = Segment::kMark;
        for (std::size_t i = first_seg; i < segments.size() && segments[i].t_begin < m.end; ++i) {
          const Segment& g = segments[i];
          if (g.field == Segment::kMark) {
            marked = true;
            break;
          }
          if (g.field == Segment::kGlue) continue;
          std::size_t b = std::max(m.begin, g.t_begin) - g.t_begin + g.field_off;
          std::size_t e = std::min(m.end, g.t_end) - g.t_begin + g.field_off;
          const Field& f = fields[g.field];
          if (g.field != last_field) ++distinct;
          last_field = g.field;
          cross.pieces.push_back({f.unit, f.offset + b, f.offset + e});
        }
        if (marked || distinct < 2) continue;
        // A finding that one unit's own findings already explain is left to them: it starts
        // in or after an own finding, and every later piece overlaps an own finding of its unit
        // ("alice@example.com" + "bob@example.org" read as "alice@example.combob"), or what it
        // reads on into is not more of the same value: a word after a token or an address
        // ("ghp_..." + "export", "alice@example.com" + "my"). The joined reading wins where it
        // completes the value the field ends with: "alice@example.co" + "m" is the address
        // alice@example.com (its last label becomes a top-level domain), "4111 1111 1111 111" +
        // "1" a longer number; the cut then covers the field's own finding too. One that starts
        // before an own finding ("see a" + "lice@example.com": the field alone finds "lice@...")
        // is kept, and its cut takes both.
        auto own_at = [&](const CrossFieldMatch::Piece& p,
                          bool at_or_after) -> const policy::Match* {
          for (const policy::Match& o : unit_matches[p.unit])
            if (o.begin < p.end && p.begin < o.end && (!at_or_after || p.begin >= o.begin))
              return &o;
          return nullptr;
        };
        const policy::Match* first_own = own_at(cross.pieces[0], true);
        bool explained = first_own != nullptr;
        for (std::size_t i = 1; i < cross.pieces.size() && explained; ++i)
          explained = own_at(cross.pieces[i], false) != nullptr;
        if (first_own && !explained) {
          // Does the next field complete the own finding, which must reach the cut?
          const auto& next = cross.pieces[1];
          char next_char = next.end > next.begin ? joined[next.unit][next.begin] : '\0';
          bool completes = false;
          if (cross.data_class == policy::DataClass::kEmail) {
            std::size_t dot = cross.value.rfind('.');
            completes =
                dot != std::string::npos &&
                policy::IsKnownTopLevelDomain(std::string_view(cross.value).substr(dot + 1));
          } else if (cross.data_class != policy::DataClass::kSecret) {
            completes = next_char >= '0' && next_char <= '9';
          }
          explained = !completes || first_own->end < cross.pieces[0].end;
        }
        if (explained) continue;
        // The same finding seen in another arrangement (as is, trimmed, glued) cuts the union
        // of both: same class, and the first pieces and the last pieces overlap. A middle piece
        // one arrangement skipped (a blank field trimmed away) is added in reading order.
        auto overlap = [](const CrossFieldMatch::Piece& a, const CrossFieldMatch::Piece& b) {
          return a.unit == b.unit && a.begin < b.end && b.begin < a.end;
        };
        bool seen = false;
        for (CrossFieldMatch& c : out) {
          if (c.data_class != cross.data_class ||
              !overlap(c.pieces.front(), cross.pieces.front()) ||
              !overlap(c.pieces.back(), cross.pieces.back()))
            continue;
          const bool ascending = c.pieces.front().unit <= c.pieces.back().unit;
          for (const CrossFieldMatch::Piece& p : cross.pieces) {
            auto same =
                std::find_if(c.pieces.begin(), c.pieces.end(),
                             [&](const CrossFieldMatch::Piece& q) { return overlap(p, q); });
            if (same != c.pieces.end()) {
              same->begin = std::min(same->begin, p.begin);
              same->end = std::max(same->end, p.end);
              continue;
            }
            auto before = [&](const CrossFieldMatch::Piece& a, const CrossFieldMatch::Piece& b) {
              if (a.unit != b.unit) return ascending ? a.unit < b.unit : a.unit > b.unit;
              return a.begin < b.begin;
            };
            c.pieces.insert(std::upper_bound(c.pieces.begin(), c.pieces.end(), p, before), p);
          }
          seen = true;
          break;
        }
        if (!seen) out.push_back(std::move(cross));
      }
    }
  }
  return out;
}

std::vector<std::vector<UnitCut>> CrossFieldCuts(
    policy::Pseudonymizer& pseudonymizer, std::size_t unit_count,
    const std::vector<CrossFieldMatch>& cross,
    const std::map<policy::DataClass, policy::Action>& actions) {
  std::vector<std::vector<UnitCut>> cuts(unit_count);
  for (const CrossFieldMatch& c : cross) {
    auto it = actions.find(c.data_class);
    if (it == actions.end() ||
        (it->second != policy::Action::kRedact && it->second != policy::Action::kPseudonymize))
      continue;
    std::string placeholder = pseudonymizer.Apply(
        c.value, {policy::Match{c.data_class, c.rule, 0, c.value.size()}}, actions);
    for (std::size_t i = 0; i < c.pieces.size(); ++i) {
      const auto& p = c.pieces[i];
      cuts[p.unit].push_back({p.begin, p.end, i == 0 ? placeholder : std::string()});
    }
  }
  return cuts;
}

std::string RewriteUnit(policy::Pseudonymizer& pseudonymizer, ScanUnit& unit,
                        const std::string& joined, const std::vector<policy::Match>& matches,
                        const std::map<policy::DataClass, policy::Action>& actions,
                        const std::vector<UnitCut>& cuts) {
  std::vector<std::size_t> starts;  // offset of each part in `joined`
  std::size_t offset = 0;
  for (const json* part : unit.parts) {
    starts.push_back(offset);
    offset += part->get_ref<const std::string&>().size();
  }
  if (!cuts.empty()) {
    // Matches and cross-field cuts as one list of edits; overlapping edits merge (the data of
    // both goes, their replacements are kept in order).
    std::vector<UnitCut> edits = cuts;
    for (const policy::Match& m : matches) {
      std::string_view original = std::string_view(joined).substr(m.begin, m.end - m.begin);
      std::string replaced = pseudonymizer.Apply(
          original, {policy::Match{m.data_class, m.rule, 0, original.size()}}, actions);
      if (replaced != original) edits.push_back({m.begin, m.end, std::move(replaced)});
    }
    // Stable: at one start, cross-field cuts (first in `edits`) come before the unit's matches.
    std::stable_sort(edits.begin(), edits.end(),
                     [](const UnitCut& a, const UnitCut& b) { return a.begin < b.begin; });
    std::vector<UnitCut> merged;
    for (UnitCut& e : edits) {
      if (!merged.empty() && e.begin < merged.back().end) {
        // An edit inside another is data the other's placeholder already stands for
        // ("alice@example.co" inside the cut of "alice@example.co" + "m").
        if (e.end <= merged.back().end) continue;
        merged.back().end = std::max(merged.back().end, e.end);
        if (e.replacement != merged.back().replacement) merged.back().replacement += e.replacement;
        continue;
      }
      merged.push_back(std::move(e));
    }
    auto part_of = [&](std::size_t pos) {  // the part holding byte `pos`
      return static_cast<std::size_t>(std::upper_bound(starts.begin(), starts.end(), pos) -
                                      starts.begin() - 1);
    };
    bool crossing = std::any_of(merged.begin(), merged.end(), [&](const UnitCut& e) {
      return e.end > e.begin && part_of(e.begin) != part_of(e.end - 1);
    });
    auto apply = [&](std::size_t from, std::size_t to) {  // joined[from, to) with its edits
      std::string out;
      std::size_t pos = from;
      for (const UnitCut& e : merged) {
        if (e.begin < from || e.begin >= to) continue;
        out.append(joined, pos, e.begin - pos);
        out += e.replacement;
        pos = e.end;
      }
      if (pos < to) out.append(joined, pos, to - pos);
      return out;
    };
    if (crossing) {
      std::string all = apply(0, joined.size());
      *unit.parts[0] = all;
      for (std::size_t k = 1; k < unit.parts.size(); ++k) *unit.parts[k] = "";
      return all;
    }
    std::string all;
    for (std::size_t k = 0; k < unit.parts.size(); ++k) {
      std::size_t to = k + 1 < starts.size() ? starts[k + 1] : joined.size();
      std::string rewritten = apply(starts[k], to);
      all += rewritten;
      *unit.parts[k] = std::move(rewritten);
    }
    return all;
  }
  bool crossing = false;
  for (const policy::Match& m : matches)
    for (std::size_t k = 1; k < starts.size(); ++k)
      if (m.begin < starts[k] && starts[k] < m.end) crossing = true;
  if (crossing) {
    std::string all = pseudonymizer.Apply(joined, matches, actions);
    *unit.parts[0] = all;
    for (std::size_t k = 1; k < unit.parts.size(); ++k) *unit.parts[k] = "";
    return all;
  }
  std::string all;
  std::size_t next = 0;  // first match not yet assigned to a part
  for (std::size_t k = 0; k < unit.parts.size(); ++k) {
    const std::string& text = unit.parts[k]->get_ref<const std::string&>();
    std::vector<policy::Match> local;
    while (next < matches.size() && matches[next].end <= starts[k] + text.size()) {
      policy::Match m = matches[next++];
      m.begin -= starts[k];
      m.end -= starts[k];
      local.push_back(m);
    }
    std::string rewritten = local.empty() ? text : pseudonymizer.Apply(text, local, actions);
    all += rewritten;
    *unit.parts[k] = std::move(rewritten);
  }
  return all;
}

void WithholdLogprobs(RequestState& st, json& choice) {
  if (!st.detectors) return;
  // Without a rule that acts on answers there is nothing to redact that they could repeat.
  bool response_rules = false;
  if (st.policy)
    for (const policy::Rule& r : st.policy->rules)
      response_rules |=
          r.direction != policy::Direction::kRequest && r.action != policy::Action::kAllow;
  if (!response_rules) return;
  auto lp = choice.find("logprobs");
  if (lp == choice.end() || lp->is_null()) return;
  *lp = nullptr;
  st.response_actions.insert("response: logprobs withheld");
}

void TransformResponse(RequestState& st, json& body) {
  auto choices = body.find("choices");
  if (choices != body.end() && choices->is_array()) {
    for (json& c : *choices) {
      if (!c.is_object()) continue;
      WithholdLogprobs(st, c);
      int index = static_cast<int>(IntegerField(c, "index", 0, internal::kMaxChoices));
      json* text = nullptr;
      if (st.chat) {
        auto m = c.find("message");
        if (m != c.end() && m->is_object()) {
          st.ScanOutputFields(*m);
          if (auto t = m->find("content"); t != m->end() && t->is_string()) text = &*t;
          if (auto r = m->find("reasoning_content"); r != m->end() && r->is_string()) {
            auto keep = st.ProcessReasoningField(r->get<std::string>());
            if (keep)
              *r = *keep;
            else
              m->erase("reasoning_content");
          }
        }
      } else if (auto t = c.find("text"); t != c.end() && t->is_string()) {
        text = &*t;
      }
      std::string out = text ? st.ProcessText(index, text->get<std::string>(), true) : "";
      out += st.FinishChoice(index);
      if (text) *text = out;
    }
  }
  st.ScanEnvelope(body, st.chat);
  auto usage = body.find("usage");
  if (usage != body.end() && usage->is_object()) {
    st.TakeUsage(*usage);
    st.SettleCounts(static_cast<std::int64_t>(st.ResponseText().size() / 4 + 1));
  } else {
    st.prompt_tokens = st.prompt_estimate;
    st.completion_tokens = static_cast<std::int64_t>(st.ResponseText().size() / 4 + 1);
    body["usage"] = {{"prompt_tokens", st.prompt_tokens},
                     {"completion_tokens", st.completion_tokens},
                     {"total_tokens", st.prompt_tokens + st.completion_tokens}};
  }
}

std::string TransformChunk(RequestState& st, const std::string& payload) {
  auto parsed = ParseBoundedJson(payload, internal::kMaxSseEventBytes);
  if (!parsed.ok() && parsed.error().code() == StatusCode::kLimitExceeded) {
    st.stream_broken = true;  // hostile upstream: end the stream with an error
    return "";
  }
  if (!parsed.ok() || !parsed->is_object()) return "";  // drop what we cannot vet
  json& chunk = *parsed;
  if (auto usage = chunk.find("usage"); usage != chunk.end() && usage->is_object()) {
    st.TakeUsage(*usage);
    // The usage-only chunk (the gateway always asks for it, for accounting) reaches the client
    // only when it asked with stream_options.include_usage.
    auto choices = chunk.find("choices");
    bool usage_only = choices == chunk.end() || (choices->is_array() && choices->empty());
    if (usage_only && !st.client_include_usage) return "";
  }
  auto choices = chunk.find("choices");
  if (choices != chunk.end() && choices->is_array()) {
    for (json& c : *choices) {
      if (!c.is_object()) continue;
      WithholdLogprobs(st, c);
      int index = static_cast<int>(IntegerField(c, "index", 0, internal::kMaxChoices));
      if (st.ChoiceFinished(index)) {
        // A choice that finished has said everything: later deltas (tool-call arguments,
        // reasoning, content) would start a fresh hold-back, so they are dropped like content.
        if (auto d = c.find("delta"); d != c.end()) *d = json::object();
        c.erase("finish_reason");
        continue;
      }
      bool finishing = c.contains("finish_reason") && !c["finish_reason"].is_null();
      json* text = nullptr;
      if (st.chat) {
        auto d = c.find("delta");
        if (d != c.end() && d->is_object()) {
          // reasoning_content and tool call arguments get the same hold-back as content (per
          // choice and tool call index), so a match split across chunks is seen whole; they are
          // taken out while the rest of the delta is scanned piece by piece.
          std::string reasoning_in;
          bool has_reasoning = false;
          if (auto r = d->find("reasoning_content"); r != d->end() && r->is_string()) {
            reasoning_in = r->get<std::string>();
            has_reasoning = true;
            d->erase(r);
          }
          // The same for the other free-text fields providers stream in pieces: `refusal`, the
          // `reasoning` some providers use instead of reasoning_content, and the legacy
          // `function_call.arguments`.
          std::vector<std::pair<std::string, std::string>> plain_in;  // {hold-back key, text}
          for (const char* name : {"refusal", "reasoning"})
            if (auto f = d->find(name); f != d->end() && f->is_string()) {
              plain_in.emplace_back(std::string("field:") + name, f->get<std::string>());
              d->erase(f);
            }
          if (auto fc = d->find("function_call"); fc != d->end() && fc->is_object())
            if (auto a = fc->find("arguments"); a != fc->end() && a->is_string()) {
              plain_in.emplace_back("fcall", a->get<std::string>());
              *a = "";
            }
          std::vector<std::pair<std::int64_t, std::string>> args_in;
          if (auto tcs = d->find("tool_calls"); tcs != d->end() && tcs->is_array())
            for (json& tc : *tcs) {
              if (!tc.is_object()) continue;
              auto f = tc.find("function");
              if (f == tc.end() || !f->is_object()) continue;
              auto a = f->find("arguments");
              if (a == f->end() || !a->is_string()) continue;
              args_in.emplace_back(IntegerField(tc, "index", 0, internal::kMaxChoices),
                                   a->get<std::string>());
              *a = "";
            }
          st.ScanOutputFields(*d);
          if (!args_in.empty() && !st.response_blocked) {
            std::size_t k = 0;
            for (json& tc : (*d)["tool_calls"]) {
              if (!tc.is_object() || !tc.contains("function") || !tc["function"].is_object() ||
                  !tc["function"].contains("arguments") || !tc["function"]["arguments"].is_string())
                continue;
              if (k >= args_in.size()) break;
              const auto& [tindex, raw] = args_in[k++];
              tc["function"]["arguments"] =
                  st.HoldBack(index, "tool:" + std::to_string(tindex), raw);
            }
          }
          if (has_reasoning && !st.response_blocked) {
            auto keep = st.ProcessReasoningField(st.HoldBack(index, "reasoning", reasoning_in));
            if (keep) (*d)["reasoning_content"] = *keep;
          }
          for (const auto& [key, raw] : plain_in) {
            if (st.response_blocked) break;
            std::string released = st.HoldBack(index, key, raw);
            st.PutHeldText(*d, key, released);
          }
          if (finishing && !st.response_blocked) st.FlushHeld(index, *d);
          if (auto t = d->find("content"); t != d->end() && t->is_string()) text = &*t;
          if (!text && finishing) {
            (*d)["content"] = "";
            text = &(*d)["content"];
          }
        }
      } else if (auto t = c.find("text"); t != c.end() && t->is_string()) {
        text = &*t;
      }
      if (text) {
        st.streamed_pieces++;
        std::string out = st.ProcessText(index, text->get<std::string>());
        if (finishing) out += st.FinishChoice(index);
        *text = out;
      }
    }
  }
  st.ScanEnvelope(chunk, st.chat);
  if (st.response_blocked) return "";
  return chunk.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace airlock::server::internal
