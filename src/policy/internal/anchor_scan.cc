#include "policy/internal/anchor_scan.h"

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>

#ifdef __SSE2__
#include <emmintrin.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
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

// Per 64 bytes of text, one bit per byte (bit k for byte k): the byte classes the finders test.
// (Upper-case letters and hex digits are word characters; the checks by hand tell them apart.)
struct ClassMasks {
  std::uint64_t digit = 0;  // [0-9]
  std::uint64_t word = 0;   // [0-9A-Za-z_]
  std::uint64_t dot = 0;    // '.'
  std::uint64_t colon = 0;  // ':'
  std::uint64_t at = 0;     // '@'
};

// Fills out[i] for the 64-byte blocks p + 64 * i, i < count.
void ClassifyBlocksPortable(const unsigned char* p, std::size_t count, ClassMasks* out) {
  for (std::size_t block = 0; block < count; ++block, p += 64) {
    ClassMasks m;
#ifdef __SSE2__
    const __m128i zero = _mm_setzero_si128();
    // Whether each byte b lies in [lo, lo + span]: (b - lo) saturating-minus span is zero.
    auto in_range = [&](__m128i bytes, char lo, char span) {
      return _mm_cmpeq_epi8(
          _mm_subs_epu8(_mm_sub_epi8(bytes, _mm_set1_epi8(lo)), _mm_set1_epi8(span)), zero);
    };
    for (int part = 0; part < 4; ++part) {
      __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * part));
      __m128i digit = in_range(bytes, '0', 9);
      __m128i letter = in_range(_mm_or_si128(bytes, _mm_set1_epi8(0x20)), 'a', 25);
      __m128i word =
          _mm_or_si128(_mm_or_si128(digit, letter), _mm_cmpeq_epi8(bytes, _mm_set1_epi8('_')));
      auto bits = [&](__m128i v) {
        return static_cast<std::uint64_t>(static_cast<unsigned>(_mm_movemask_epi8(v)))
               << (16 * part);
      };
      m.digit |= bits(digit);
      m.word |= bits(word);
      m.dot |= bits(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('.')));
      m.colon |= bits(_mm_cmpeq_epi8(bytes, _mm_set1_epi8(':')));
      m.at |= bits(_mm_cmpeq_epi8(bytes, _mm_set1_epi8('@')));
    }
#else
    for (int k = 0; k < 64; ++k) {
      std::uint64_t bit = std::uint64_t{1} << k;
      if (IsDigit(p[k])) m.digit |= bit;
      if (IsWord(p[k])) m.word |= bit;
      if (p[k] == '.') m.dot |= bit;
      if (p[k] == ':') m.colon |= bit;
      if (p[k] == '@') m.at |= bit;
    }
#endif
    out[block] = m;
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define AIRLOCK_ANCHOR_SCAN_AVX2 1
// The same, 32 bytes at a time, on CPUs with AVX2 (chosen at run time).
__attribute__((target("avx2"))) void ClassifyBlocksAvx2(const unsigned char* p, std::size_t count,
                                                        ClassMasks* out) {
  const __m256i zero = _mm256_setzero_si256();
  const __m256i zero_char = _mm256_set1_epi8('0'), nine = _mm256_set1_epi8(9);
  const __m256i lower_a = _mm256_set1_epi8('a'), twenty_five = _mm256_set1_epi8(25);
  const __m256i case_bit = _mm256_set1_epi8(0x20), underscore = _mm256_set1_epi8('_');
  const __m256i dot_char = _mm256_set1_epi8('.'), colon_char = _mm256_set1_epi8(':');
  const __m256i at_char = _mm256_set1_epi8('@');
  for (std::size_t block = 0; block < count; ++block, p += 64) {
    ClassMasks m;
    for (int part = 0; part < 2; ++part) {
      __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 32 * part));
      __m256i digit =
          _mm256_cmpeq_epi8(_mm256_subs_epu8(_mm256_sub_epi8(bytes, zero_char), nine), zero);
      __m256i letter = _mm256_cmpeq_epi8(
          _mm256_subs_epu8(_mm256_sub_epi8(_mm256_or_si256(bytes, case_bit), lower_a), twenty_five),
          zero);
      __m256i word =
          _mm256_or_si256(_mm256_or_si256(digit, letter), _mm256_cmpeq_epi8(bytes, underscore));
      // (No lambda: it would not inherit the target attribute.)
      const int shift = 32 * part;
      m.digit |= std::uint64_t{static_cast<std::uint32_t>(_mm256_movemask_epi8(digit))} << shift;
      m.word |= std::uint64_t{static_cast<std::uint32_t>(_mm256_movemask_epi8(word))} << shift;
      m.dot |= std::uint64_t{static_cast<std::uint32_t>(
                   _mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, dot_char)))}
               << shift;
      m.colon |= std::uint64_t{static_cast<std::uint32_t>(
                     _mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, colon_char)))}
                 << shift;
      m.at |= std::uint64_t{static_cast<std::uint32_t>(
                  _mm256_movemask_epi8(_mm256_cmpeq_epi8(bytes, at_char)))}
              << shift;
    }
    out[block] = m;
  }
}
#endif

using ClassifyBlocks = void (*)(const unsigned char*, std::size_t, ClassMasks*);
ClassifyBlocks PickClassifier() {
#ifdef AIRLOCK_ANCHOR_SCAN_AVX2
  if (__builtin_cpu_supports("avx2")) return &ClassifyBlocksAvx2;
#endif
  return &ClassifyBlocksPortable;
}

// Bit k of the result: bit k + shift of the 128-bit mask (next:block), 1 <= shift <= 63.
std::uint64_t Ahead(std::uint64_t block, std::uint64_t next, int shift) {
  return (block >> shift) | (next << (64 - shift));
}

// How many bits of (next:block) are set in [k, k + width), k < 64, width < 64.
int BitsInWindow(std::uint64_t block, std::uint64_t next, int k, int width) {
  std::uint64_t from_k = k == 0 ? block : (block >> k) | (next << (64 - k));
  return std::popcount(from_k & ((std::uint64_t{1} << width) - 1));
}

// ---- zhipu-api-key: (?:^|[^A-Za-z0-9_\-])([0-9a-f]{32}\.[A-Za-z0-9]{16})\b ----
// Every match has its '.' at some d with 32 lowercase hex digits right before it, 16 letters or
// digits right after, a start of text or a character other than [A-Za-z0-9_-] before the hex
// digits and a word boundary after the letters; the whole match lies in [d - 36, d + 17] (the
// boundary character before is at most 4 bytes).
constexpr std::size_t kZhipuBefore = 36, kZhipuAfter = 17;

bool ZhipuAt(std::string_view text, std::size_t d) {
  const std::size_t n = text.size();
  if (d < 32 || d + 17 > n) return false;
  if (d > 32 && (IsWord(At(text, d - 33)) || text[d - 33] == '-')) return false;
  for (std::size_t k = d - 32; k < d; ++k)
    if (!IsLowerHex(At(text, k))) return false;
  for (std::size_t k = d + 1; k <= d + 16; ++k)
    if (!IsAlnum(At(text, k))) return false;
  return d + 17 == n || !IsWord(At(text, d + 17));
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

// ---- iban: \b([A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30})\b ----
// Every match starts at a word boundary with two capital letters and two digits, followed by at
// least 11 units of an optional blank and a capital or digit; it is at most 64 bytes long.
constexpr std::size_t kIbanWidth = 64;

bool IbanAt(std::string_view text, std::size_t p) {
  auto unit_char = [&](std::size_t i) {
    if (i >= text.size()) return false;
    unsigned char c = At(text, i);
    return IsDigit(c) || (c >= 'A' && c <= 'Z');
  };
  auto upper = [&](std::size_t i) { return At(text, i) >= 'A' && At(text, i) <= 'Z'; };
  if (p + 4 > text.size() || !upper(p) || !upper(p + 1) || !IsDigit(At(text, p + 2)) ||
      !IsDigit(At(text, p + 3)))
    return false;
  std::size_t q = p + 4;
  for (int units = 0; units < 11; ++units) {
    if (q < text.size() && text[q] == ' ') ++q;
    if (!unit_char(q)) return false;
    ++q;
  }
  return true;
}

// ---- ipv6: ((?:[0-9A-Fa-f]{1,4})?(?::[0-9A-Fa-f]{0,4}){2,7}) ----
// Every match holds two colons with at most four hex digits between them, its first colon at
// most 4 bytes after its start; it is at most 39 bytes long. For a colon c followed so, the
// region [c - 4, c + 39] holds every match whose first colon is c, and those start by c.
constexpr std::size_t kIpv6Before = 4, kIpv6After = 39;

bool Ipv6At(std::string_view text, std::size_t c) {
  for (std::size_t k = c + 1; k < text.size() && k <= c + 5; ++k) {
    unsigned char b = At(text, k);
    if (b == ':') return true;
    if (!(IsDigit(b) || ((b | 0x20) >= 'a' && (b | 0x20) <= 'f'))) return false;
  }
  return false;
}

// ---- email's anchor (rules.cc): "@[A-Za-z0-9]", the rule's match within 67 bytes before the
// anchor's end and 601 after it; for an '@' at p: [p - 65, p + 603], starting by p.
constexpr std::size_t kEmailBefore = 65, kEmailAfter = 603;

// ---- ipv4's anchor (rules.cc): "[0-9]\.[0-9]", the match within 15 bytes either side of the
// anchor's end; for an anchor starting at q: [q - 12, q + 18], starting by q.
constexpr std::size_t kIpv4Before = 12, kIpv4After = 18;

// ---- the digit rules, each starting at a word boundary before a digit (rules.cc) ----
// us-ssn: \b([0-9]{3}[ \-][0-9]{2}[ \-][0-9]{4})\b, 11 bytes.
bool SsnAt(std::string_view text, std::size_t p) {
  if (p + 11 > text.size()) return false;
  auto sep = [&](std::size_t i) { return text[i] == ' ' || text[i] == '-'; };
  for (std::size_t k : {0, 1, 2, 4, 5, 7, 8, 9, 10})
    if (!IsDigit(At(text, p + k))) return false;
  return sep(p + 3) && sep(p + 6);
}
constexpr std::size_t kSsnWidth = 11;
// cn-resident-id: \b([1-9][0-9]{5}(?:18|19|20)[0-9]{2}...[0-9]{3}[0-9Xx])\b: 17 digits first,
// 18 bytes in all (the digits are tested in the masks).
constexpr std::size_t kResidentIdWidth = 18;
// phone-dialled-00: \b00[1-9][0-9]{0,3} then up to 6 groups of an optional separator and
// "([0-9]{1,4})" or [0-9]{1,5}: at most 6 + 6 * 7 = 48 bytes.
bool Dialled00At(std::string_view text, std::size_t p) {
  return p + 3 <= text.size() && text[p] == '0' && text[p + 1] == '0' && text[p + 2] != '0';
}
constexpr std::size_t kDialled00Width = 48;
// phone-cn-mobile-cc: \b(?:00)?86, an optional separator, then a mobile number of at most 15
// bytes ("(138) 1234 5678"): at most 20 bytes.
bool StartsWith86(std::string_view text, std::size_t p) {
  return text.substr(p, 2) == "86" || text.substr(p, 4) == "0086";
}
constexpr std::size_t kCnMobileCcWidth = 20;
// phone-cn-mobile: every match holds "1[3-9][0-9]" at some q, after a word boundary (the number
// alone, or after "+86" and a separator, or after "(") or right after "+86". It starts at most 5
// bytes before q ("+86 (") and ends at most 14 after ("138) 1234 5678").
bool CnMobileAt(std::string_view text, std::size_t q) {
  return q + 3 <= text.size() && text[q] == '1' && text[q + 1] >= '3' && text[q + 1] <= '9';
}
constexpr std::size_t kCnMobileBefore = 5, kCnMobileAfter = 14;

}  // namespace

std::optional<HandRule> HandRuleFor(std::string_view rule_id) {
  if (rule_id == "us-ssn") return HandRule::kUsSsn;
  if (rule_id == "cn-resident-id") return HandRule::kCnResidentId;
  if (rule_id == "phone-dialled-00") return HandRule::kPhoneDialled00;
  if (rule_id == "phone-cn-mobile") return HandRule::kPhoneCnMobile;
  if (rule_id == "phone-cn-mobile-cc") return HandRule::kPhoneCnMobileCc;
  if (rule_id == "email") return HandRule::kEmail;
  if (rule_id == "ipv4") return HandRule::kIpv4;
  if (rule_id == "payment-card") return HandRule::kPaymentCard;
  if (rule_id == "iban") return HandRule::kIban;
  if (rule_id == "ipv6") return HandRule::kIpv6;
  if (rule_id == "zhipu-api-key") return HandRule::kZhipu;
  return std::nullopt;
}

void FindHandAnchors(std::string_view text, unsigned rules, HandRegions* out,
                     HandScanKernel kernel) {
  for (auto& regions : *out) regions.clear();
  const bool card = rules & (1u << static_cast<int>(HandRule::kPaymentCard));
  const bool iban = rules & (1u << static_cast<int>(HandRule::kIban));
  const bool ipv6 = rules & (1u << static_cast<int>(HandRule::kIpv6));
  const bool zhipu = rules & (1u << static_cast<int>(HandRule::kZhipu));
  const bool email = rules & (1u << static_cast<int>(HandRule::kEmail));
  const bool ipv4 = rules & (1u << static_cast<int>(HandRule::kIpv4));
  const bool ssn = rules & (1u << static_cast<int>(HandRule::kUsSsn));
  const bool resident_id = rules & (1u << static_cast<int>(HandRule::kCnResidentId));
  const bool dialled = rules & (1u << static_cast<int>(HandRule::kPhoneDialled00));
  const bool mobile = rules & (1u << static_cast<int>(HandRule::kPhoneCnMobile));
  const bool mobile_cc = rules & (1u << static_cast<int>(HandRule::kPhoneCnMobileCc));
  auto& card_out = (*out)[static_cast<int>(HandRule::kPaymentCard)];
  auto& iban_out = (*out)[static_cast<int>(HandRule::kIban)];
  auto& ipv6_out = (*out)[static_cast<int>(HandRule::kIpv6)];
  auto& zhipu_out = (*out)[static_cast<int>(HandRule::kZhipu)];
  auto& email_out = (*out)[static_cast<int>(HandRule::kEmail)];
  auto& ipv4_out = (*out)[static_cast<int>(HandRule::kIpv4)];
  auto& ssn_out = (*out)[static_cast<int>(HandRule::kUsSsn)];
  auto& resident_id_out = (*out)[static_cast<int>(HandRule::kCnResidentId)];
  auto& dialled_out = (*out)[static_cast<int>(HandRule::kPhoneDialled00)];
  auto& mobile_out = (*out)[static_cast<int>(HandRule::kPhoneCnMobile)];
  auto& mobile_cc_out = (*out)[static_cast<int>(HandRule::kPhoneCnMobileCc)];
  static const ClassifyBlocks best = PickClassifier();
  const ClassifyBlocks classify_blocks =
      kernel == HandScanKernel::kBest ? best : &ClassifyBlocksPortable;
  const auto* data = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  auto emit = [&](std::vector<AnchorRegion>& to, std::uint64_t starts, std::size_t at, auto&& check,
                  std::size_t before, std::size_t after) {
    for (; starts != 0; starts &= starts - 1) {
      std::size_t p = at + static_cast<std::size_t>(std::countr_zero(starts));
      if (check(p)) to.push_back({p >= before ? p - before : 0, std::min(n, p + after), p});
    }
  };
  // Blocks are classified a chunk at a time (one call per chunk), with one block more for the
  // look-ahead of the chunk's last block.
  constexpr std::size_t kChunk = 16;
  std::array<ClassMasks, kChunk + 1> masks;
  const std::size_t full_blocks = n / 64, blocks = (n + 63) / 64;
  std::uint64_t word_before_block = 0;  // whether the byte before the block is a word character
  for (std::size_t first = 0; first < blocks; first += kChunk) {
    const std::size_t count = std::min(kChunk, blocks - first);
    const std::size_t whole = std::min(count + 1, full_blocks > first ? full_blocks - first : 0);
    if (whole > 0) classify_blocks(data + 64 * first, whole, masks.data());
    for (std::size_t i = whole; i <= count; ++i) {
      // The tail, padded with NUL (in no class, as the end of the text reads), then nothing.
      unsigned char tail[64] = {};
      std::size_t at = 64 * (first + i);
      if (at < n) std::memcpy(tail, data + at, n - at);
      classify_blocks(tail, 1, &masks[i]);
    }
    for (std::size_t i = 0; i < count; ++i) {
      const ClassMasks& block = masks[i];
      const ClassMasks& next = masks[i + 1];
      const std::size_t at = 64 * (first + i);
      // Bit k: the byte before k is a word character (RE2's \b is ASCII).
      const std::uint64_t word_before = (block.word << 1) | word_before_block;
      const std::uint64_t letter = block.word & ~block.digit;  // or '_'
      // Each rule's test needs a byte of its class in the block (iban: a digit up to 3 bytes
      // into the next one); prose mostly has none.
      const bool digits_here = block.digit != 0;
      if (card && digits_here) {
        // \b then four digits (a word boundary before a digit: never after another digit).
        std::uint64_t starts = block.digit & ~word_before;
        for (int shift = 1; shift < 4; ++shift) starts &= Ahead(block.digit, next.digit, shift);
        // The anchor holds 13 digits within its first 22 bytes.
        emit(
            card_out, starts, at,
            [&](std::size_t p) {
              return BitsInWindow(block.digit, next.digit, static_cast<int>(p - at), 22) >= 13 &&
                     CardAnchorAt(text, p);
            },
            0, kCardWidth);
      }
      if (iban && (digits_here || (next.digit & 0xF) != 0)) {
        // \b, two letters, two digits.
        std::uint64_t starts = letter & ~word_before & Ahead(letter, next.word & ~next.digit, 1) &
                               Ahead(block.digit, next.digit, 2) &
                               Ahead(block.digit, next.digit, 3);
        emit(
            iban_out, starts, at, [&](std::size_t p) { return IbanAt(text, p); }, 0, kIbanWidth);
      }
      if (ipv6 && block.colon != 0) {
        // A colon, then another after 0..4 word characters (hex digits, checked by hand).
        std::uint64_t word_run = ~std::uint64_t{0}, follows = 0;
        for (int shift = 1; shift <= 5; ++shift) {
          follows |= word_run & Ahead(block.colon, next.colon, shift);
          word_run &= Ahead(block.word, next.word, shift);
        }
        emit(
            ipv6_out, block.colon & follows, at, [&](std::size_t c) { return Ipv6At(text, c); },
            kIpv6Before, kIpv6After);
      }
      if (zhipu && block.dot != 0) {
        // A '.' between two word characters, then the whole check.
        std::uint64_t starts = block.dot & word_before & Ahead(block.word, next.word, 1);
        emit(
            zhipu_out, starts, at, [&](std::size_t d) { return ZhipuAt(text, d); }, kZhipuBefore,
            kZhipuAfter);
      }
      if (email && block.at != 0) {
        // '@' then a letter or digit ('_' is the one other word character).
        std::uint64_t starts = block.at & Ahead(block.word, next.word, 1);
        emit(
            email_out, starts, at, [&](std::size_t p) { return text[p + 1] != '_'; }, kEmailBefore,
            kEmailAfter);
      }
      if (ipv4 && digits_here) {
        std::uint64_t starts =
            block.digit & Ahead(block.dot, next.dot, 1) & Ahead(block.digit, next.digit, 2);
        emit(
            ipv4_out, starts, at, [](std::size_t) { return true; }, kIpv4Before, kIpv4After);
      }
      if (!digits_here) {
        word_before_block = block.word >> 63;
        continue;
      }
      // A digit after a word boundary, and the digits that follow it.
      const std::uint64_t digit_start = block.digit & ~word_before;
      const std::uint64_t digits2 = digit_start & Ahead(block.digit, next.digit, 1);
      const std::uint64_t digits3 = digits2 & Ahead(block.digit, next.digit, 2);
      if (ssn) {
        // Three digits, a non-word byte, two digits.
        std::uint64_t starts = digits3 & ~Ahead(block.word, next.word, 3) &
                               Ahead(block.digit, next.digit, 4) &
                               Ahead(block.digit, next.digit, 5);
        emit(
            ssn_out, starts, at, [&](std::size_t p) { return SsnAt(text, p); }, 0, kSsnWidth);
      }
      if (resident_id) {
        std::uint64_t starts = digits3 & Ahead(block.digit, next.digit, 3);
        emit(
            resident_id_out, starts, at,
            [&](std::size_t p) {
              return BitsInWindow(block.digit, next.digit, static_cast<int>(p - at), 17) == 17;
            },
            0, kResidentIdWidth);
      }
      if (dialled) {
        emit(
            dialled_out, digits3, at, [&](std::size_t p) { return Dialled00At(text, p); }, 0,
            kDialled00Width);
      }
      if (mobile_cc) {
        emit(
            mobile_cc_out, digits2, at, [&](std::size_t p) { return StartsWith86(text, p); }, 0,
            kCnMobileCcWidth);
      }
      if (mobile) {
        for (std::uint64_t starts = digits3; starts != 0; starts &= starts - 1) {
          std::size_t q = at + static_cast<std::size_t>(std::countr_zero(starts));
          if (CnMobileAt(text, q)) {
            mobile_out.push_back({q >= kCnMobileBefore ? q - kCnMobileBefore : 0,
                                  std::min(n, q + kCnMobileAfter), q});
          } else if (q > 0 && text[q - 1] == '+' && text.substr(q, 2) == "86" &&
                     CnMobileAt(text, q + 2)) {
            // "+86138...": the number glued to the country code; the match starts at the '+'.
            mobile_out.push_back({q - 1, std::min(n, q + 2 + kCnMobileAfter), q - 1});
          }
        }
      }
      word_before_block = block.word >> 63;
    }
  }
}

}  // namespace airlock::policy::internal
