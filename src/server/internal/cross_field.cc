// The request side's cross-field scan and rewrite (declared in policy_apply.h): a finding split
// between fields of one request (two messages, name and content, content parts, tool-call
// arguments), read joined near each field boundary, is mapped back to a cut in each field it
// touches; RewriteUnit applies a unit's own matches and those cuts. Split from policy_apply.cc,
// which holds the response side (hold-back, stream scanning, envelope fields).
#include <algorithm>

#include "server/internal/policy_apply.h"

namespace airlock::server::internal {

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

// How an arrangement reads one field: its own bytes, or decoded (one family of encodings undone,
// offsets mapped back to the field's bytes through `decoded`).
struct Reading {
  std::string_view text;
  const policy::DecodedView* decoded = nullptr;
  std::size_t FieldBegin(std::size_t b) const { return decoded ? decoded->OriginalBegin(b) : b; }
  std::size_t FieldEnd(std::size_t e) const { return decoded ? decoded->OriginalEnd(e) : e; }
};

// One stretch of the arranged text: bytes [t_begin, t_end) are field bytes [field_off, ...) of
// reading of field `field`, an elision mark (field == kMark) standing for the middle of a long
// field, or a group separator read at a cut between two digit groups (field == kGlue; it belongs to
// no field).
struct Segment {
  static constexpr std::size_t kMark = static_cast<std::size_t>(-1);
  static constexpr std::size_t kGlue = static_cast<std::size_t>(-2);
  std::size_t t_begin, t_end, field, field_off;
};

// A byte that reads on into the next field's first byte: joined without a blank, the two
// fields form one word ("hi" + "536-22-4581" reads "hi536-22-4581", which no number rule
// accepts; "hi" + "bob@" reads an address with local part "hibob").
bool JoinsWords(char c) {
  unsigned char u = static_cast<unsigned char>(c);
  return (u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || u >= 0x80 ||
         c == '_' || c == '.' || c == '%' || c == '+' || c == '-';
}

// How far a scan that starts fresh at a field (see FindCrossFieldMatches) reads: more than any
// value split between short fields, and a bound on the work a request of many tiny fields costs.
constexpr std::size_t kFreshStartWindow = 512;

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
  // Fields that are digits only (a number's, or a string of digits: ["536", "22", "4581"]).
  auto all_digits = [](std::string_view t) {
    return !t.empty() &&
           std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  std::vector<bool> digits_only(fields.size());
  std::size_t digit_fields = 0;
  for (std::size_t k = 0; k < fields.size(); ++k) {
    digits_only[k] = all_digits(fields[k].text);
    digit_fields += digits_only[k];
  }
  bool several_units = false;
  for (const Field& f : fields)
    if (f.unit != fields[0].unit) several_units = true;
  constexpr std::size_t kWindow = kCrossFieldWindow;
  constexpr std::string_view kMark = "\n\n";
  std::string text;
  std::vector<Segment> segments;
  std::vector<Reading> readings(fields.size());
  std::vector<policy::DecodedView> decoded(fields.size());
  // The fields as they are, then decoded (each family of encodings apart, as Scan reads them):
  // a boundary written encoded ("card 4111%201111" + "1111%201111", "alice%40%0A" +
  // "example.com") shows its group separator or its padding only decoded. Scan decodes what it
  // reads anyway, so the decoded readings add only the arrangements that depend on the boundary
  // (trimmed, glued); escapes cut in two by the boundary ("4111%2" + "01111") decode in the
  // arrangement of the fields as they are.
  for (int reading : {0, 1, 2}) {
    bool any_decoded = false;
    for (std::size_t k = 0; k < fields.size(); ++k) {
      readings[k] = {fields[k].text, nullptr};
      if (reading == 0) continue;
      auto family = reading == 1 ? policy::DecodedView::Family::kWeb
                                 : policy::DecodedView::Family::kQuotedPrintable;
      if (decoded[k].Assign(fields[k].text, family)) {
        readings[k] = {decoded[k].text(), &decoded[k]};
        any_decoded = true;
      }
    }
    if (reading != 0 && !any_decoded) continue;
    bool any_padding = false;
    for (const Reading& r : readings)
      if (!r.text.empty() && (SeparatorAt(r.text, 0) || TrailingSeparators(r.text, 0)))
        any_padding = true;
    for (bool reversed : {false, true}) {
      // Reversing the parts of one unit only is not a reading order any template uses.
      if (reversed && !several_units) continue;
      // Trimmed, and glued: trimmed with the number's group separator put back at a cut between
      // two digit groups ("4111 1111" + "1111 1111" reads "4111 1111 1111 1111", not
      // "4111 11111111 1111", which no grouped-number rule accepts).
      // Mode 3: glued, and a list of digit-only fields, which shows no separator between its
      // groups ([536, 22, 4581], ["536", "22", "4581"]), read with a dash between two of them.
      for (int mode : {0, 1, 2, 3}) {
        const bool trimmed = mode >= 1, glued = mode >= 2, dashed = mode == 3;
        if (mode == 0 && reading != 0) continue;  // Scan decodes the fields as they are itself
        if (mode == 1 && !any_padding) continue;  // the same text as untrimmed
        if (dashed && digit_fields < 2) continue;
        text.clear();
        segments.clear();
        bool any_glue = false;
        std::string_view previous;               // the last field's text as placed
        std::size_t previous_k = fields.size();  // and its index (none yet)
        for (std::size_t n = 0; n < fields.size(); ++n) {
          std::size_t k = reversed ? fields.size() - 1 - n : n;
          std::string_view view = readings[k].text;
          std::size_t from = 0, to = view.size();
          if (trimmed) {
            from = LeadingSeparators(view);
            to -= TrailingSeparators(view, from);
          }
          if (to <= from) continue;
          if (glued) {
            std::string glue = policy::GroupSeparatorAtCut(
                previous, view.substr(from, std::min(to - from, kWindow)));
            if (glue.empty() && dashed && previous_k != fields.size() && digits_only[k] &&
                digits_only[previous_k])
              glue = "-";
            if (!glue.empty()) {
              segments.push_back({text.size(), text.size() + glue.size(), Segment::kGlue, 0});
              text.append(glue);
              any_glue = true;
            }
          }
          previous = view.substr(from, to - from);
          previous_k = k;
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
        // The joined text, and the text read from the start of each field that the join glued
        // to the word before it: a value that starts a field is seen whole even when the field
        // before ends in a letter or digit ("hi" + "536-22" + "-4581", and "hi" + "bob@" +
        // "corp.example" as "bob@corp.example" rather than "hibob@corp.example").
        std::vector<policy::Match> found = detectors.Scan(text);
        for (std::size_t i = 1; i < segments.size(); ++i) {
          const Segment& g = segments[i];
          if (g.field >= Segment::kGlue || segments[i - 1].field >= Segment::kGlue ||
              segments[i - 1].field == g.field || g.t_begin == 0 || g.t_begin >= text.size())
            continue;
          if (!JoinsWords(text[g.t_begin - 1]) || !JoinsWords(text[g.t_begin])) continue;
          std::size_t length = std::min(kFreshStartWindow, text.size() - g.t_begin);
          std::size_t end = Utf8Back(text, g.t_begin + length);
          for (policy::Match m :
               detectors.Scan(std::string_view(text).substr(g.t_begin, end - g.t_begin))) {
            m.begin += g.t_begin;
            m.end += g.t_begin;
            found.push_back(m);
          }
        }
        std::stable_sort(
            found.begin(), found.end(),
            [](const policy::Match& a, const policy::Match& b) { return a.begin < b.begin; });
        std::size_t first_seg = 0;
        for (const policy::Match& m : found) {
          while (first_seg < segments.size() && segments[first_seg].t_end <= m.begin) ++first_seg;
          CrossFieldMatch cross{m.data_class, m.rule, text.substr(m.begin, m.end - m.begin), {}};
          bool marked = false;
          std::size_t distinct = 0, last_field = Segment::kMark;
          std::vector<std::size_t> piece_starts;  // where each piece starts in `text`
          for (std::size_t i = first_seg; i < segments.size() && segments[i].t_begin < m.end; ++i) {
            const Segment& g = segments[i];
            if (g.field == Segment::kMark) {
              marked = true;
              break;
            }
            if (g.field == Segment::kGlue) continue;
            std::size_t t_begin = std::max(m.begin, g.t_begin);
            std::size_t b = readings[g.field].FieldBegin(t_begin - g.t_begin + g.field_off);
            std::size_t e =
                readings[g.field].FieldEnd(std::min(m.end, g.t_end) - g.t_begin + g.field_off);
            const Field& f = fields[g.field];
            if (g.field != last_field) ++distinct;
            last_field = g.field;
            cross.pieces.push_back({f.unit, f.offset + b, f.offset + e});
            piece_starts.push_back(t_begin);
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
            // As read (decoded where the reading is), not the field's first byte ('%' of "%31").
            char next_char = text[piece_starts[1]];
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
  }
  // A finding that reads a whole field into a value the next fields hold ("hi" + "bob@" +
  // "corp.example" read as "hibob@corp.example") cannot be told from a value cut after its
  // first letters ("ali" + "ce@" + "example.com"): it is marked, and
  // the gateway refuses it rather than rewrite the user's "hi" or leave "ali" (see
  // CrossFieldMatch::starts_with_a_whole_field). The same value read from the field it starts
  // in (fresh start) is then dropped. A whole field that is a number's digits ("5" before an
  // address) cannot hold part of one: that reading is dropped, the later fields keep theirs.
  auto overlap = [](const CrossFieldMatch::Piece& a, const CrossFieldMatch::Piece& b) {
    return a.unit == b.unit && a.begin < b.end && b.begin < a.end;
  };
  auto whole_field = [&](const CrossFieldMatch::Piece& p) {
    std::string_view text = joined[p.unit];
    return LeadingSeparators(text.substr(0, p.begin)) == p.begin &&
           TrailingSeparators(text.substr(p.end), 0) == text.size() - p.end;
  };
  auto explained_by_own = [&](const CrossFieldMatch::Piece& p) {
    for (const policy::Match& o : unit_matches[p.unit])
      if (o.begin < p.end && p.begin < o.end) return true;
    return false;
  };
  std::vector<bool> drop(out.size(), false);
  // A number's digits take part for the digit-grouped classes; an address or a token read into
  // a number before or after it ("x" + "eve@example.com" + [5]: "xeve@example.com5") is the
  // strings' own finding, not a reason to refuse the number.
  for (std::size_t a = 0; a < out.size(); ++a)
    if (out[a].data_class == policy::DataClass::kEmail ||
        out[a].data_class == policy::DataClass::kSecret)
      for (const auto& p : out[a].pieces) drop[a] = drop[a] || units[p.unit].fixed;
  // A reading from a fresh start that a longer finding covers piece for piece is that finding's.
  for (std::size_t b = 0; b < out.size(); ++b)
    for (std::size_t a = 0; a < out.size() && !drop[b]; ++a) {
      if (a == b || drop[a] || out[a].data_class != out[b].data_class ||
          out[a].pieces.size() <= out[b].pieces.size())
        continue;
      bool covered = true;
      for (const auto& p : out[b].pieces)
        covered = covered && std::any_of(out[a].pieces.begin(), out[a].pieces.end(),
                                         [&](const auto& q) { return overlap(p, q); });
      if (covered) drop[b] = true;
    }
  for (std::size_t a = 0; a < out.size(); ++a) {
    const auto& longer = out[a].pieces;
    if (longer.size() < 2 || !whole_field(longer[0])) continue;
    bool rest_own = true;
    for (std::size_t i = 1; i < longer.size() && rest_own; ++i)
      rest_own = explained_by_own(longer[i]);
    std::vector<std::size_t> suffixes;  // the same value read from the second piece on
    for (std::size_t b = 0; b < out.size(); ++b) {
      if (a == b || out[a].data_class != out[b].data_class) continue;  // (dropped above)
      const auto& shorter = out[b].pieces;
      if (shorter.size() != longer.size() - 1) continue;
      bool suffix = true;
      for (std::size_t i = 0; i < shorter.size() && suffix; ++i)
        suffix = overlap(longer[i + 1], shorter[i]);
      if (suffix) suffixes.push_back(b);
    }
    if (units[longer[0].unit].fixed && (rest_own || !suffixes.empty())) {
      drop[a] = true;
      for (std::size_t b : suffixes) drop[b] = false;  // the value without the number
      continue;
    }
    // Where the next field holds the value whole ("a" + "lice@example.com"), the joined reading
    // is cut in both (the first field is one short word at most); only a value that itself spans
    // the later fields is ambiguous.
    if (suffixes.empty()) continue;
    out[a].starts_with_a_whole_field = true;
  }
  std::vector<CrossFieldMatch> kept;
  for (std::size_t i = 0; i < out.size(); ++i)
    if (!drop[i]) kept.push_back(std::move(out[i]));
  return kept;
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

}  // namespace airlock::server::internal
