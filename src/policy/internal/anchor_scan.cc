#include "policy/internal/anchor_scan.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

namespace airlock::policy::internal {
namespace {

bool IsDigit(unsigned char c) { return c >= '0' && c <= '9'; }
bool IsAlnum(unsigned char c) { return IsDigit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'); }
// RE2's (and Hyperscan's, without HS_FLAG_UCP) \w and \b are ASCII: [0-9A-Za-z_].
bool IsWord(unsigned char c) { return IsAlnum(c) || c == '_'; }
bool IsLowerHex(unsigned char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }
unsigned char At(std::string_view text, std::size_t i) {
  return static_cast<unsigned char>(text[i]);
}

// Per 64 bytes of text: bit k of `digit` says byte k is an ASCII digit, of `word` that it is a
// word character [0-9A-Za-z_].
struct ClassMasks {
  std::uint64_t digit = 0, word = 0;
};

ClassMasks Classify64(const unsigned char* p) {
  ClassMasks m;
#ifdef __SSE2__
  const __m128i zero_char = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9);
  const __m128i lower_a = _mm_set1_epi8('a'), twenty_five = _mm_set1_epi8(25);
  const __m128i case_bit = _mm_set1_epi8(0x20), underscore = _mm_set1_epi8('_');
  const __m128i zero = _mm_setzero_si128();
  for (int part = 0; part < 4; ++part) {
    __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * part));
    // b is in [lo, lo + span] when saturating (b - lo) - span is zero (the wrap lands high).
    __m128i digit = _mm_cmpeq_epi8(_mm_subs_epu8(_mm_sub_epi8(bytes, zero_char), nine), zero);
    __m128i letter = _mm_cmpeq_epi8(
        _mm_subs_epu8(_mm_sub_epi8(_mm_or_si128(bytes, case_bit), lower_a), twenty_five), zero);
    __m128i word = _mm_or_si128(_mm_or_si128(digit, letter), _mm_cmpeq_epi8(bytes, underscore));
    m.digit |= static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(digit)))
               << (16 * part);
    m.word |= static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(word)))
              << (16 * part);
  }
#else
  for (int k = 0; k < 64; ++k) {
    if (IsDigit(p[k])) m.digit |= std::uint64_t{1} << k;
    if (IsWord(p[k])) m.word |= std::uint64_t{1} << k;
  }
#endif
  return m;
}

// Calls visit(p) for every p where a run of at least `min_digits` (1..4) ASCII digits starts
// after a word boundary (the start of the text or a non-word byte before it), in increasing
// order. One pass of bit masks, 64 bytes at a time.
template <typename Visit>
void ForEachBoundedDigitRun(std::string_view text, int min_digits, Visit visit) {
  const auto* data = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  auto classify = [&](std::size_t at) {
    if (at + 64 <= n) return Classify64(data + at);
    // The tail, padded with NUL (neither digit nor word character, as the end of text reads).
    unsigned char tail[64] = {};
    if (at < n) std::memcpy(tail, data + at, n - at);
    return Classify64(tail);
  };
  ClassMasks block = classify(0);
  std::uint64_t word_before_block = 0;  // whether the byte before the block is a word character
  for (std::size_t at = 0; at < n; at += 64) {
    ClassMasks next = classify(at + 64);
    std::uint64_t runs = block.digit;  // bit k: min_digits digits start at k
    for (int shift = 1; shift < min_digits; ++shift)
      runs &= (block.digit >> shift) | (next.digit << (64 - shift));
    std::uint64_t word_before = (block.word << 1) | word_before_block;
    for (std::uint64_t starts = runs & ~word_before; starts != 0; starts &= starts - 1)
      visit(at + static_cast<std::size_t>(std::countr_zero(starts)));
    word_before_block = block.word >> 63;
    block = next;
  }
}

// ---- zhipu-api-key: (?:^|[^A-Za-z0-9_\-])([0-9a-f]{32}\.[A-Za-z0-9]{16})\b ----
// Every match has its '.' at some d with 32 lowercase hex digits right before it, 16 letters or
// digits right after, a start of text or a character other than [A-Za-z0-9_-] before the hex
// digits and a word boundary after the letters; the whole match lies in [d - 36, d + 17] (the
// boundary character before is at most 4 bytes).
void FindZhipu(std::string_view text, std::vector<AnchorRegion>* out) {
  const std::size_t n = text.size();
  for (std::size_t d = 32; d + 17 <= n; ++d) {
    const void* hit = std::memchr(text.data() + d, '.', n - 16 - d);
    if (hit == nullptr) break;
    d = static_cast<std::size_t>(static_cast<const char*>(hit) - text.data());
    if (!IsLowerHex(At(text, d - 1)) || !IsAlnum(At(text, d + 1))) continue;
    bool ok = d == 32 || !(IsWord(At(text, d - 33)) || text[d - 33] == '-');
    for (std::size_t k = d - 32; ok && k < d; ++k) ok = IsLowerHex(At(text, k));
    for (std::size_t k = d + 1; ok && k <= d + 16; ++k) ok = IsAlnum(At(text, k));
    if (!ok || (d + 17 < n && IsWord(At(text, d + 17)))) continue;
    out->push_back({d >= 36 ? d - 36 : 0, d + 17, d});
  }
}

// ---- payment-card's anchor ----
// \b[0-9]{4}(?:S?[0-9]{4}S?[0-9]{4}S?[0-9]|S?[0-9]{6}S?[0-9]{4}), where S is a card separator:
// one of " \t\n-/_.:|\~", or "  ", " - ", " / ", "\r\n" (rules.cc, CARD_SEP_). Every card the
// validator accepts starts with a match of it (its first 13 digits, in one of the layouts the
// validator accepts), and the pattern's whole match is at most 73 bytes: the region of a match
// starting at p is [p, p + 73].
constexpr std::size_t kCardWidth = 73;

// Whether `count` digits start at p; sets *end after them.
bool Digits(std::string_view text, std::size_t p, int count, std::size_t* end) {
  if (p + static_cast<std::size_t>(count) > text.size()) return false;
  for (int k = 0; k < count; ++k)
    if (!IsDigit(At(text, p + static_cast<std::size_t>(k)))) return false;
  *end = p + static_cast<std::size_t>(count);
  return true;
}

// The lengths of the separators S that can start at p (0 always: S is optional), as a bit set.
unsigned SeparatorLengths(std::string_view text, std::size_t p) {
  unsigned lengths = 1u << 0;
  if (p >= text.size()) return lengths;
  char c = text[p];
  if (c != '\0' && std::strchr(" \t\n-/_.:|\\~", c) != nullptr) lengths |= 1u << 1;
  char c1 = p + 1 < text.size() ? text[p + 1] : '\0';
  char c2 = p + 2 < text.size() ? text[p + 2] : '\0';
  if ((c == ' ' && c1 == ' ') || (c == '\r' && c1 == '\n')) lengths |= 1u << 2;
  if (c == ' ' && (c1 == '-' || c1 == '/') && c2 == ' ') lengths |= 1u << 3;
  return lengths;
}

// Whether the digit groups `groups[k..]`, each after an optional separator, follow at p.
bool GroupsFollow(std::string_view text, std::size_t p, const int* groups, int k, int count) {
  if (k == count) return true;
  unsigned lengths = SeparatorLengths(text, p);
  for (std::size_t len = 0; len <= 3; ++len) {
    if (!(lengths & (1u << len))) continue;
    std::size_t end;
    if (Digits(text, p + len, groups[k], &end) && GroupsFollow(text, end, groups, k + 1, count))
      return true;
  }
  return false;
}

bool CardAnchorAt(std::string_view text, std::size_t p) {
  static constexpr int kThirteen[] = {4, 4, 1};  // after the first 4: S?4 S?4 S?1
  static constexpr int kFourteen[] = {6, 4};     // S?6 S?4
  std::size_t end;
  if (!Digits(text, p, 4, &end)) return false;
  return GroupsFollow(text, end, kThirteen, 0, 3) || GroupsFollow(text, end, kFourteen, 0, 2);
}

void FindCardAnchors(std::string_view text, std::vector<AnchorRegion>* out) {
  ForEachBoundedDigitRun(text, 4, [&](std::size_t p) {
    if (CardAnchorAt(text, p)) out->push_back({p, std::min(text.size(), p + kCardWidth), p});
  });
}

}  // namespace

AnchorFinder AnchorFinderFor(std::string_view rule_id) {
  if (rule_id == "zhipu-api-key") return &FindZhipu;
  if (rule_id == "payment-card") return &FindCardAnchors;
  return nullptr;
}

}  // namespace airlock::policy::internal
