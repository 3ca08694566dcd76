#include "policy/internal/confirm.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <utility>

namespace airlock::policy::internal {
namespace {

constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(unsigned char c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }
bool IsAlnum(unsigned char c) { return IsDigit(c) || IsAlpha(c); }
// RE2's \w and \b are ASCII: [0-9A-Za-z_].
bool IsWord(unsigned char c) { return IsAlnum(c) || c == '_'; }
// RE2's \s: [\t\n\f\r ] (not \v).
bool IsSpace(unsigned char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r';
}
bool IsQuote(unsigned char c) { return c == '"' || c == '\''; }
unsigned char At(std::string_view text, std::size_t i) {
  return static_cast<unsigned char>(text[i]);
}
// \b after a word character at end - 1: end of text or a non-word character next.
bool WordEndsAt(std::string_view text, std::size_t end) {
  return end == text.size() || !IsWord(At(text, end));
}

// ---- e-mail ----
// ([A-Za-z0-9][A-Za-z0-9._%+\-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?\.){1,8}
//  [A-Za-z]{2,24})\b
bool IsLocalChar(unsigned char c) {
  return IsAlnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-';
}
bool IsLabelChar(unsigned char c) { return IsAlnum(c) || c == '-'; }

// The end of the preferred match of the domain part starting at `p`, or kNone. A label cannot
// hold '.', so each repetition's label is the whole run up to the next '.'; the greedy {1,8}
// prefers the most labels, then backs off one label at a time until the top-level part fits.
std::size_t EmailDomainEnd(std::string_view text, std::size_t p, std::size_t limit) {
  std::array<std::size_t, 8> label_ends;
  int labels = 0;
  for (std::size_t q = p; labels < 8;) {
    std::size_t r = q;
    while (r < limit && r - q <= 63 && IsLabelChar(At(text, r))) ++r;  // longer fails anyway
    std::size_t len = r - q;
    if (len == 0 || len > 63 || r >= limit || text[r] != '.') break;
    if (!IsAlnum(At(text, q)) || !IsAlnum(At(text, r - 1))) break;
    label_ends[labels++] = r + 1;
    q = r + 1;
  }
  for (int k = labels; k >= 1; --k) {
    std::size_t t = label_ends[k - 1], u = t;
    while (u < limit && u - t <= 24 && IsAlpha(At(text, u))) ++u;
    // [A-Za-z]{2,24} then \b: only the whole run of letters can be followed by a boundary.
    if (u - t >= 2 && u - t <= 24 && WordEndsAt(text, u)) return u;
  }
  return kNone;
}

ConfirmResult Email(std::string_view text, std::size_t from, std::size_t limit,
                    ConfirmedMatch* out) {
  // A start pairs with the first '@' after it (the local part cannot hold '@'), so matches are
  // found in the order of their '@'.
  for (std::size_t at = from + 1; at < limit; ++at) {
    const void* hit = std::memchr(text.data() + at, '@', limit - at);
    if (hit == nullptr) break;
    at = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    std::size_t lowest = std::max(from, at >= 64 ? at - 64 : 0);
    std::size_t run = at;
    while (run > lowest && IsLocalChar(At(text, run - 1))) --run;
    while (run < at && !IsAlnum(At(text, run))) ++run;
    if (run == at) continue;
    std::size_t end = EmailDomainEnd(text, at + 1, limit);
    if (end == kNone) continue;
    *out = {run, end, run, end};
    return ConfirmResult::kMatch;
  }
  return ConfirmResult::kNoMatch;
}

// ---- IPv4 ----
// \b((?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:same)){3})\b
// Depth-first in the pattern's order of preference: the three-digit forms, then two digits,
// then one.
std::size_t Ipv4Rest(std::string_view text, std::size_t p, std::size_t limit, int octet) {
  if (p >= limit || !IsDigit(At(text, p))) return kNone;
  std::array<std::size_t, 3> lengths;
  int n = 0;
  unsigned char c0 = At(text, p);
  unsigned char c1 = p + 1 < limit ? At(text, p + 1) : 0;
  unsigned char c2 = p + 2 < limit ? At(text, p + 2) : 0;
  if ((c0 == '2' && c1 == '5' && c2 >= '0' && c2 <= '5') ||
      (c0 == '2' && c1 >= '0' && c1 <= '4' && IsDigit(c2)) ||
      (c0 == '1' && IsDigit(c1) && IsDigit(c2)))
    lengths[n++] = 3;
  if (c0 != '0' && IsDigit(c1)) lengths[n++] = 2;
  lengths[n++] = 1;
  for (int i = 0; i < n; ++i) {
    std::size_t q = p + lengths[i];
    if (octet == 3) {
      if (WordEndsAt(text, q)) return q;
      continue;
    }
    if (q >= limit || text[q] != '.') continue;
    std::size_t end = Ipv4Rest(text, q + 1, limit, octet + 1);
    if (end != kNone) return end;
  }
  return kNone;
}

ConfirmResult Ipv4(std::string_view text, std::size_t from, std::size_t limit,
                   ConfirmedMatch* out) {
  for (std::size_t s = from; s < limit; ++s) {
    if (!IsDigit(At(text, s)) || (s > 0 && IsWord(At(text, s - 1)))) continue;
    std::size_t end = Ipv4Rest(text, s, limit, 0);
    if (end == kNone) continue;
    *out = {s, end, s, end};
    return ConfirmResult::kMatch;
  }
  return ConfirmResult::kNoMatch;
}

// ---- generic key assignment ----
// (?i)(?:api[_\-]?key|apikey|secret|token|passwd|password|pwd|access[_\-]?key|auth[_\-]?key|
//  credentials?|client[_\-]?secret)[\w.\-]{0,20}["']?\s{0,32}(?:[:=]{1,2}|=>)\s{0,32}["']?
//  ([A-Za-z0-9_\-+/=.~!@#$%^&*]{12,128})
bool IsValueChar(unsigned char c) {
  // (Not strchr: it would find the terminating NUL for c == 0.)
  switch (c) {
    case '-':
    case '+':
    case '/':
    case '=':
    case '.':
    case '~':
    case '!':
    case '@':
    case '#':
    case '$':
    case '%':
    case '^':
    case '&':
    case '*':
      return true;
    default:
      return IsWord(c);
  }
}

// The end of the literal `word` (lower case) read case-insensitively at `p`, or 0.
std::size_t Literal(std::string_view text, std::size_t p, std::size_t limit,
                    std::string_view word) {
  if (limit < p || limit - p < word.size()) return 0;
  for (std::size_t i = 0; i < word.size(); ++i)
    if ((At(text, p + i) | 0x20) != static_cast<unsigned char>(word[i])) return 0;
  return p + word.size();
}

// The end of the longest key word at `s`, or 0. Every key word is followed by the same
// [\w.\-]{0,20} and is made of word characters, so the longest one leaves the most room.
std::size_t KeyWordEnd(std::string_view text, std::size_t s, std::size_t limit) {
  std::size_t best = 0;
  auto joined = [&](std::string_view a, std::string_view b) {
    std::size_t p = Literal(text, s, limit, a);
    if (!p) return;
    best = std::max(best, Literal(text, p, limit, b));
    if (p < limit && (text[p] == '_' || text[p] == '-'))
      best = std::max(best, Literal(text, p + 1, limit, b));
  };
  switch (At(text, s) | 0x20) {
    case 'a':
      joined("api", "key");
      joined("access", "key");
      joined("auth", "key");
      break;
    case 's':
      best = Literal(text, s, limit, "secret");
      break;
    case 't':
      best = Literal(text, s, limit, "token");
      break;
    case 'p':
      best = std::max({Literal(text, s, limit, "passwd"), Literal(text, s, limit, "password"),
                       Literal(text, s, limit, "pwd")});
      break;
    case 'c':
      best =
          std::max(Literal(text, s, limit, "credentials"), Literal(text, s, limit, "credential"));
      joined("client", "secret");
      break;
    default:
      break;
  }
  return best;
}

// After the assignment operator: blanks, an optional quote, then 12..128 value characters.
bool MayFoldToAscii(unsigned char c);

bool GenericValue(std::string_view text, std::size_t v, std::size_t limit, std::size_t* begin,
                  std::size_t* end, bool* unsure) {
  std::size_t w = v;
  while (w < limit && w - v <= 32 && IsSpace(At(text, w))) ++w;
  if (w - v > 32) return false;
  if (w < limit && IsQuote(At(text, w))) ++w;
  std::size_t u = w;
  while (u < limit && u - w < 128 && IsValueChar(At(text, u))) ++u;
  if (u < limit && u - w < 128 && MayFoldToAscii(At(text, u))) *unsure = true;
  if (u - w < 12) return false;
  *begin = w;
  *end = u;
  return true;
}

// (?i) makes RE2 read U+212A KELVIN SIGN as k and U+017F LONG S as s, in the key words, in \w
// and in the value class. Normalized text has neither; where a byte that can start one is met
// (0xE2, 0xC5), RE2 decides.
bool MayFoldToAscii(unsigned char c) { return c == 0xE2 || c == 0xC5; }

ConfirmResult GenericApiKey(std::string_view text, std::size_t from, std::size_t limit,
                            ConfirmedMatch* out) {
  auto is_colon_eq = [](unsigned char c) { return c == ':' || c == '='; };
  // 1: the first letter of a key word; 2: a byte that may start a letter RE2 folds to ASCII.
  static constexpr auto kStops = [] {
    std::array<unsigned char, 256> stops{};
    for (char c : std::string_view("astpcASTPC")) stops[static_cast<unsigned char>(c)] = 1;
    stops[0xE2] = stops[0xC5] = 2;
    return stops;
  }();
  for (std::size_t s = from; s < limit; ++s) {
    while (s < limit && kStops[At(text, s)] == 0) ++s;
    if (s == limit) break;
    if (kStops[At(text, s)] == 2) return ConfirmResult::kUnsure;
    // The second letter, before the full look-up: a is followed by p, c or u; s by e; t by o;
    // p by a or w; c by r or l. (A fold byte there is met by the scan on the next round.)
    if (s + 1 < limit) {
      unsigned char c0 = At(text, s) | 0x20, c1 = At(text, s + 1) | 0x20;
      bool pair = c0 == 'a'   ? (c1 == 'p' || c1 == 'c' || c1 == 'u')
                  : c0 == 's' ? c1 == 'e'
                  : c0 == 't' ? c1 == 'o'
                  : c0 == 'p' ? (c1 == 'a' || c1 == 'w')
                              : (c1 == 'r' || c1 == 'l');
      if (!pair) continue;
    }
    std::size_t key_end = KeyWordEnd(text, s, limit);
    if (!key_end) continue;
    // [\w.\-]{0,20}, then a quote, blanks or the operator: none of those is a suffix character,
    // so the suffix is the whole run.
    std::size_t r = key_end;
    while (r < limit && r - key_end <= 20 &&
           (IsWord(At(text, r)) || text[r] == '.' || text[r] == '-'))
      ++r;
    if (r < limit && MayFoldToAscii(At(text, r))) return ConfirmResult::kUnsure;
    if (r - key_end > 20) continue;
    if (r < limit && IsQuote(At(text, r))) ++r;
    std::size_t blanks = r;
    while (r < limit && r - blanks <= 32 && IsSpace(At(text, r))) ++r;
    if (r - blanks > 32 || r >= limit) continue;
    // (?:[:=]{1,2}|=>) in its order of preference.
    std::array<std::size_t, 3> op_ends;
    int ops = 0;
    if (is_colon_eq(At(text, r))) {
      if (r + 1 < limit && is_colon_eq(At(text, r + 1))) op_ends[ops++] = r + 2;
      op_ends[ops++] = r + 1;
    }
    if (text[r] == '=' && r + 1 < limit && text[r + 1] == '>') op_ends[ops++] = r + 2;
    for (int i = 0; i < ops; ++i) {
      std::size_t begin, end;
      bool unsure = false;
      bool matched = GenericValue(text, op_ends[i], limit, &begin, &end, &unsure);
      if (unsure) return ConfirmResult::kUnsure;
      if (matched) {
        *out = {s, end, begin, end};
        return ConfirmResult::kMatch;
      }
    }
  }
  return ConfirmResult::kNoMatch;
}

// ---- fixed-prefix tokens ----
// (?:^|[^A-Za-z0-9_\-])(prefix[class]{min,max})  optionally followed by \b.
enum class CharClass {
  kAlnum,
  kAlpha,
  kLowerHex,
  kHex,
  kAlnumDash,
  kAlnumUnderscore,
  kAlnumUnderscoreDash
};

bool InClass(CharClass k, unsigned char c) {
  switch (k) {
    case CharClass::kAlnum:
      return IsAlnum(c);
    case CharClass::kAlpha:
      return IsAlpha(c);
    case CharClass::kLowerHex:
      return IsDigit(c) || (c >= 'a' && c <= 'f');
    case CharClass::kHex:
      return IsDigit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'f');
    case CharClass::kAlnumDash:
      return IsAlnum(c) || c == '-';
    case CharClass::kAlnumUnderscore:
      return IsWord(c);
    case CharClass::kAlnumUnderscoreDash:
      return IsWord(c) || c == '-';
  }
  return false;
}

struct TokenFormat {
  std::string_view id;
  std::array<std::string_view, 6> prefixes;  // in the pattern's order; empty ones unused
  CharClass body;
  std::size_t min, max;
  bool word_end;  // a trailing \b (only with a class of word characters)
};

constexpr std::size_t kUnbounded = std::numeric_limits<std::size_t>::max();

// Each line is its rule in rules.cc, spelt out; confirm_test.cc checks each against RE2.
constexpr TokenFormat kTokenFormats[] = {
    {"gcp-api-key", {"AIza"}, CharClass::kAlnumUnderscoreDash, 35, 35, false},
    {"google-oauth-client-secret", {"GOCSPX-"}, CharClass::kAlnumUnderscoreDash, 28, 28, false},
    {"alibaba-access-key-id", {"LTAI"}, CharClass::kAlnum, 20, 20, false},
    {"digitalocean-token", {"doo_v1_", "dop_v1_", "dor_v1_"}, CharClass::kLowerHex, 64, 64, false},
    {"heroku-api-key", {"HRKU-"}, CharClass::kAlnumUnderscoreDash, 60, 60, false},
    {"github-pat", {"ghp_"}, CharClass::kAlnum, 36, 36, false},
    {"github-oauth", {"gho_"}, CharClass::kAlnum, 36, 36, false},
    {"github-app-token", {"ghu_", "ghs_"}, CharClass::kAlnum, 36, 36, false},
    {"github-refresh-token", {"ghr_"}, CharClass::kAlnum, 36, 76, false},
    {"github-fine-grained-pat", {"github_pat_"}, CharClass::kAlnumUnderscore, 82, 82, false},
    {"gitlab-pat", {"glpat-"}, CharClass::kAlnumUnderscoreDash, 20, kUnbounded, false},
    {"gitlab-pipeline-trigger", {"glptt-"}, CharClass::kLowerHex, 40, 40, false},
    {"npm-token", {"npm_"}, CharClass::kAlnum, 36, 36, false},
    {"slack-token",
     {"xoxb-", "xoxa-", "xoxp-", "xoxr-", "xoxs-", "xoxe-"},
     CharClass::kAlnumDash,
     10,
     kUnbounded,
     false},
    {"twilio-api-key", {"SK"}, CharClass::kHex, 32, 32, false},
    {"shopify-token", {"shpat_", "shpca_", "shppa_", "shpss_"}, CharClass::kHex, 32, 32, false},
    {"linear-api-key", {"lin_api_"}, CharClass::kAlnum, 40, 40, false},
    {"huggingface-token", {"hf_"}, CharClass::kAlpha, 34, 34, false},
    {"groq-api-key", {"gsk_"}, CharClass::kAlnum, 52, 52, false},
    {"perplexity-api-key", {"pplx-"}, CharClass::kAlnum, 48, 48, false},
    {"deepseek-dashscope-api-key", {"sk-"}, CharClass::kLowerHex, 32, 32, true},
    {"moonshot-api-key", {"sk-"}, CharClass::kAlnum, 48, 48, true},
};

template <std::size_t kIndex>
ConfirmResult Token(std::string_view text, std::size_t from, std::size_t limit,
                    ConfirmedMatch* out) {
  constexpr const TokenFormat& kFormat = kTokenFormats[kIndex];
  const char first = kFormat.prefixes[0][0];
  bool same_first = std::all_of(kFormat.prefixes.begin(), kFormat.prefixes.end(),
                                [&](std::string_view p) { return p.empty() || p[0] == first; });
  for (std::size_t g = from; g < limit; ++g) {
    if (same_first) {
      const void* hit = std::memchr(text.data() + g, first, limit - g);
      if (hit == nullptr) break;
      g = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    }
    // The boundary: the start of the text (when the search starts there) or one character that
    // is not [A-Za-z0-9_\-], inside the searched range.
    std::size_t whole_begin;
    if (g == 0) {
      if (from != 0) continue;
      whole_begin = 0;
    } else {
      if (g - 1 < from) continue;
      unsigned char before = At(text, g - 1);
      if (IsWord(before) || before == '-') continue;
      whole_begin = g - 1;
      if (before >= 0x80) {
        // A UTF-8 character ends there (then the boundary is the whole character) or a stray
        // byte: RE2 decides, if a token follows at all.
        for (std::string_view prefix : kFormat.prefixes)
          if (!prefix.empty() && text.substr(g, prefix.size()) == prefix)
            return ConfirmResult::kUnsure;
        continue;
      }
    }
    for (std::string_view prefix : kFormat.prefixes) {
      if (prefix.empty()) break;
      if (limit - g < prefix.size() || text.compare(g, prefix.size(), prefix) != 0) continue;
      std::size_t b = g + prefix.size(), e = b;
      while (e < limit && e - b < kFormat.max && InClass(kFormat.body, At(text, e))) ++e;
      if (e - b < kFormat.min) continue;
      if (kFormat.word_end && !WordEndsAt(text, e)) continue;
      *out = {whole_begin, e, g, e};
      return ConfirmResult::kMatch;
    }
  }
  return ConfirmResult::kNoMatch;
}

template <std::size_t... I>
constexpr auto TokenConfirmers(std::index_sequence<I...>) {
  return std::array<std::pair<std::string_view, Confirmer>, sizeof...(I)>{
      std::pair<std::string_view, Confirmer>{kTokenFormats[I].id, &Token<I>}...};
}

}  // namespace

Confirmer ConfirmerFor(std::string_view rule_id) {
  if (rule_id == "email") return &Email;
  if (rule_id == "ipv4") return &Ipv4;
  if (rule_id == "generic-api-key") return &GenericApiKey;
  static constexpr auto kTokens =
      TokenConfirmers(std::make_index_sequence<std::size(kTokenFormats)>{});
  for (const auto& [id, confirmer] : kTokens)
    if (id == rule_id) return confirmer;
  return nullptr;
}

}  // namespace airlock::policy::internal
