#include "policy/internal/normalize.h"

#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/uspoof.h>
#include <unicode/utf8.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif
#include <map>
#include <memory>

namespace airlock::policy::internal {
namespace {

// Code points below this have their mapping in the table; the rest (CJK extensions, rare
// scripts) ask ICU for the NFKC mapping at scan time.
constexpr UChar32 kTableLimit = 0x20000;

bool IsInvisible(UChar32 c) {
  // Default-ignorable code points render as nothing (U+3164 HANGUL FILLER, U+115F, ...), so
  // they can sit between the characters of a card number unseen.
  return u_charType(c) == U_FORMAT_CHAR || u_hasBinaryProperty(c, UCHAR_VARIATION_SELECTOR) ||
         u_hasBinaryProperty(c, UCHAR_DEFAULT_IGNORABLE_CODE_POINT) ||
         c == 0x034F;  // combining grapheme joiner
}

// Control characters are dropped too: after JSON decoding "\u0000" is a real NUL byte, and a
// NUL or ESC inside an e-mail or card number would otherwise split it. Tab, line feed, vertical
// tab, form feed and carriage return stay: they separate words.
bool IsDroppedControl(UChar32 c) {
  return (c < 0x20 && !(c >= 0x09 && c <= 0x0D)) || (c >= 0x7F && c <= 0x9F);
}

bool IsDroppedAsciiByte(unsigned char c) { return c < 0x80 && IsDroppedControl(c); }

// Per-code-point mapping: kKeep (the character is read as it is), kDrop, or a replacement string
// in `pool` at `offset` with `length` bytes.
struct CharTable {
  static constexpr std::uint32_t kKeep = 0, kDrop = 1;
  std::vector<std::uint32_t> entries;  // kKeep, kDrop, or (offset << 8 | length) + 2
  std::string pool;
  const icu::Normalizer2* nfkc = nullptr;

  std::string_view Replacement(std::uint32_t e) const {
    e -= 2;
    return std::string_view(pool).substr(e >> 8, e & 0xFF);
  }
};

// Confusable letters: a non-ASCII letter whose TS #39 skeleton equals the skeleton of an ASCII
// letter is read as that letter. Several ASCII letters can share a skeleton (I and l both give
// "l"); the one with the same case as the letter wins (Cyrillic І -> I, palochka ӏ -> l).
class ConfusableMap {
 public:
  ConfusableMap() {
    UErrorCode status = U_ZERO_ERROR;
    checker_ = uspoof_open(&status);
    if (U_FAILURE(status)) {
      checker_ = nullptr;
      return;
    }
    for (char c = 'A'; c <= 'z'; ++c) {
      if (c > 'Z' && c < 'a') continue;
      std::string skeleton = Skeleton(static_cast<unsigned char>(c));
      if (!skeleton.empty()) ascii_by_skeleton_[skeleton].push_back(c);
    }
  }
  ~ConfusableMap() {
    if (checker_) uspoof_close(checker_);
  }
  ConfusableMap(const ConfusableMap&) = delete;
  ConfusableMap& operator=(const ConfusableMap&) = delete;

  // The ASCII letter `c` reads as, or 0.
  char Lookup(UChar32 c) const {
    if (!checker_ || c < 0x80 || !u_isalpha(c)) return 0;
    auto it = ascii_by_skeleton_.find(Skeleton(c));
    if (it == ascii_by_skeleton_.end()) return 0;
    const std::vector<char>& letters = it->second;
    if (letters.size() == 1) return letters[0];
    bool upper = u_isupper(c);
    for (char l : letters)
      if ((l >= 'A' && l <= 'Z') == upper) return l;
    return 0;
  }

 private:
  std::string Skeleton(UChar32 c) const {
    UErrorCode status = U_ZERO_ERROR;
    icu::UnicodeString in(c), out;
    uspoof_getSkeletonUnicodeString(checker_, 0, in, out, &status);
    std::string utf8;
    if (U_SUCCESS(status)) out.toUTF8String(utf8);
    return utf8;
  }
  USpoofChecker* checker_ = nullptr;
  std::map<std::string, std::vector<char>> ascii_by_skeleton_;
};

// What one character becomes, computed with ICU: the NFKC decomposition mapping, with each of its
// characters replaced by its confusable ASCII letter where it has one. Returns false for "keep".
bool MapCharacter(UChar32 c, const icu::Normalizer2* nfkc, const ConfusableMap* confusables,
                  std::string* out) {
  out->clear();
  icu::UnicodeString decomposition;
  bool decomposed = nfkc != nullptr && nfkc->getDecomposition(c, decomposition);
  if (!decomposed) decomposition = icu::UnicodeString(c);
  bool changed = decomposed;
  for (int32_t i = 0; i < decomposition.length();) {
    UChar32 d = decomposition.char32At(i);
    i += U16_LENGTH(d);
    // Detection reads through what only decorates or re-spells: combining marks (a U+0301
    // after every digit of a card), decimal digits of other scripts (Arabic-Indic, Devanagari),
    // Unicode dashes and the minus sign (card and phone separators), and the ideographic full
    // stop (the dot of an e-mail domain).
    // Only a mark that stands alone in the input is dropped; the marks of a precomposed letter
    // (the diaeresis of ü in an IDN address) stay, as before.
    if (d == c && (u_charType(d) == U_NON_SPACING_MARK || u_charType(d) == U_ENCLOSING_MARK)) {
      changed = true;
      continue;
    }
    if (d >= 0x80 && u_charType(d) == U_DECIMAL_DIGIT_NUMBER && u_charDigitValue(d) >= 0) {
      out->push_back(static_cast<char>('0' + u_charDigitValue(d)));
      changed = true;
      continue;
    }
    if (d >= 0x80 && (u_charType(d) == U_DASH_PUNCTUATION || d == 0x2212)) {
      out->push_back('-');
      changed = true;
      continue;
    }
    if (d == 0x3002 || d == 0xFF61) {
      out->push_back('.');
      changed = true;
      continue;
    }
    char letter = confusables ? confusables->Lookup(d) : 0;
    if (letter) {
      out->push_back(letter);
      changed = true;
    } else {
      icu::UnicodeString(d).toUTF8String(*out);
    }
  }
  return changed;
}

const CharTable& Table() {
  static const CharTable* table = [] {
    auto* t = new CharTable;
    UErrorCode status = U_ZERO_ERROR;
    t->nfkc = icu::Normalizer2::getNFKCInstance(status);
    if (U_FAILURE(status)) t->nfkc = nullptr;
    ConfusableMap confusables;
    t->entries.assign(kTableLimit, CharTable::kKeep);
    std::string mapped;
    for (UChar32 c = 0; c < kTableLimit; ++c) {
      if (c < 0x80 && !IsDroppedControl(c)) continue;
      if (U_IS_SURROGATE(c)) continue;
      if (IsDroppedControl(c) || IsInvisible(c)) {
        t->entries[c] = CharTable::kDrop;
        continue;
      }
      if (!MapCharacter(c, t->nfkc, &confusables, &mapped)) continue;
      if (mapped.empty()) {  // a mark standing alone
        t->entries[c] = CharTable::kDrop;
        continue;
      }
      if (mapped.size() > 0xFF) continue;  // no such mapping exists; never truncate one
      t->entries[c] = ((static_cast<std::uint32_t>(t->pool.size()) << 8) |
                       static_cast<std::uint32_t>(mapped.size())) +
                      2;
      t->pool += mapped;
    }
    return t;
  }();
  return *table;
}

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighs = 0x8080808080808080ULL;

// Index of the first byte at or after `i` that is non-ASCII or an ASCII control (the only bytes
// normalization may touch), or in.size(). Eight bytes at a time: ordinary prose has none.
std::size_t NextSuspect(std::string_view in, std::size_t i) {
  const char* p = in.data();
  const std::size_t n = in.size();
#ifdef __SSE2__
  // Sixteen bytes at a time: a signed compare below 0x20 flags the controls and every byte
  // >= 0x80 at once.
  const __m128i space = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7F);
  while (i + 16 <= n) {
    __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + i));
    int mask = _mm_movemask_epi8(_mm_or_si128(_mm_cmplt_epi8(v, space), _mm_cmpeq_epi8(v, del)));
    if (mask != 0) {
      for (std::size_t k = i; k < i + 16; ++k) {
        auto c = static_cast<unsigned char>(p[k]);
        if (c >= 0x80 || IsDroppedAsciiByte(c)) return k;
      }
    }
    i += 16;
  }
#endif
  while (i + 8 <= n) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    std::uint64_t below_space = (w - kOnes * 0x20) & ~w & kHighs;  // a byte < 0x20
    std::uint64_t del = w ^ (kOnes * 0x7F);
    std::uint64_t is_del = (del - kOnes) & ~del & kHighs;  // a byte == 0x7F
    if ((w & kHighs) | below_space | is_del) {
      // Line breaks and tabs are kept: look at the eight bytes, and go on eight at a time when
      // those are all the word holds.
      for (std::size_t k = i; k < i + 8; ++k) {
        auto c = static_cast<unsigned char>(p[k]);
        if (c >= 0x80 || IsDroppedAsciiByte(c)) return k;
      }
    }
    i += 8;
  }
  for (; i < n; ++i) {
    auto c = static_cast<unsigned char>(p[i]);
    if (c >= 0x80 || IsDroppedAsciiByte(c)) return i;
  }
  return n;
}

// Classify's answer for invalid UTF-8 (no table entry has this value). Text that is otherwise
// left as it is keeps its invalid bytes; text that is normalized reads them as U+FFFD: kept raw,
// bytes on either side of a dropped control could join into a character that was never
// normalized ("alice\xEF\xBC" + "\x01" + "\xA0example.com" read as a full-width @).
constexpr std::uint32_t kInvalidUtf8 = 0xFFFFFFFFu;
constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

// Decodes the character at `i` (which is a suspect byte) and returns its table entry
// (kInvalidUtf8 for invalid UTF-8), setting `*next` past it. Characters beyond the table
// are mapped through ICU into `*scratch`, whose contents then replace them.
std::uint32_t Classify(std::string_view in, std::size_t i, std::size_t* next, std::string* scratch,
                       bool* use_scratch) {
  const CharTable& table = Table();
  *use_scratch = false;
  auto c0 = static_cast<unsigned char>(in[i]);
  if (c0 < 0x80) {
    *next = i + 1;
    return IsDroppedAsciiByte(c0) ? CharTable::kDrop : CharTable::kKeep;
  }
  // Decode from the character's own start so that offsets stay small whatever the text size.
  const auto* data = reinterpret_cast<const std::uint8_t*>(in.data() + i);
  const auto length = static_cast<int32_t>(std::min<std::size_t>(in.size() - i, 4));
  int32_t pos = 0;
  UChar32 c = 0;
  U8_NEXT(data, pos, length, c);
  *next = i + static_cast<std::size_t>(pos);
  if (c < 0) return kInvalidUtf8;
  if (c < kTableLimit) return table.entries[c];
  if (IsInvisible(c)) return CharTable::kDrop;
  if (MapCharacter(c, table.nfkc, nullptr, scratch)) {
    if (scratch->empty()) return CharTable::kDrop;
    *use_scratch = true;
    return 2;  // any value other than kKeep/kDrop
  }
  return CharTable::kKeep;
}

}  // namespace

bool NeedsNormalization(std::string_view in) {
  std::string scratch;
  bool use_scratch = false;
  for (std::size_t i = NextSuspect(in, 0); i < in.size(); i = NextSuspect(in, i)) {
    std::size_t next = i + 1;
    const std::uint32_t e = Classify(in, i, &next, &scratch, &use_scratch);
    if (e != CharTable::kKeep && e != kInvalidUtf8) return true;
    i = next;
  }
  return false;
}

void NormalizedText::Replace(std::string_view in, std::size_t orig_begin, std::size_t orig_end,
                             std::string_view with) {
  if (edits_.empty()) text_.reserve(in.size() + in.size() / 8);
  text_.append(in.substr(copied_to_, orig_begin - copied_to_));
  std::size_t norm_begin = text_.size();
  text_.append(with);
  edits_.push_back(Edit{norm_begin, text_.size(), orig_begin, orig_end});
  copied_to_ = orig_end;
}

bool NormalizedText::Assign(std::string_view in) {
  text_.clear();
  edits_.clear();
  copied_to_ = 0;
  const CharTable& table = Table();
  std::string scratch;
  bool use_scratch = false;
  const std::uint32_t* entries = table.entries.data();
  const auto* bytes = reinterpret_cast<const unsigned char*>(in.data());
  const std::size_t n = in.size();
  for (std::size_t i = NextSuspect(in, 0); i < n;) {
    std::size_t next = i + 1;
    std::uint32_t e;
    // Well-formed two- and three-byte characters (Latin, Greek, Cyrillic, CJK...) decoded here
    // for speed, exactly as U8_NEXT in Classify would; anything else goes through Classify.
    unsigned char c0 = bytes[i];
    if (c0 >= 0xC2 && c0 <= 0xDF && i + 1 < n && (bytes[i + 1] & 0xC0) == 0x80) {
      e = entries[((c0 & 0x1F) << 6) | (bytes[i + 1] & 0x3F)];
      next = i + 2;
      use_scratch = false;
    } else if (c0 >= 0xE0 && c0 <= 0xEF && i + 2 < n && (bytes[i + 1] & 0xC0) == 0x80 &&
               (bytes[i + 2] & 0xC0) == 0x80 &&
               ((c0 & 0x0F) << 12 | (bytes[i + 1] & 0x3F) << 6) >= 0x800 &&
               !(c0 == 0xED && bytes[i + 1] >= 0xA0)) {  // not overlong, not a surrogate
      e = entries[((c0 & 0x0F) << 12) | ((bytes[i + 1] & 0x3F) << 6) | (bytes[i + 2] & 0x3F)];
      next = i + 3;
      use_scratch = false;
    } else {
      e = Classify(in, i, &next, &scratch, &use_scratch);
    }
    if (e == CharTable::kDrop) {
      Replace(in, i, next, {});
    } else if (e == kInvalidUtf8) {
      Replace(in, i, next, kReplacementCharacter);
    } else if (e != CharTable::kKeep) {
      Replace(in, i, next, use_scratch ? std::string_view(scratch) : table.Replacement(e));
    }
    i = next;
    if (i < n && bytes[i] < 0x80) i = NextSuspect(in, i);  // else the next character is one too
  }
  if (edits_.empty()) return false;
  text_.append(in.substr(copied_to_));
  return true;
}

std::size_t NormalizedText::OriginalBegin(std::size_t begin) const {
  // The last edit starting at or before `begin` (a dropped character there lies before it).
  auto it = std::upper_bound(edits_.begin(), edits_.end(), begin,
                             [](std::size_t pos, const Edit& e) { return pos < e.norm_begin; });
  if (it == edits_.begin()) return begin;
  const Edit& e = *(it - 1);
  if (begin < e.norm_end) return e.orig_begin;  // inside a replacement: its whole character
  return e.orig_end + (begin - e.norm_end);     // a copied byte after the edit
}

std::size_t NormalizedText::OriginalEnd(std::size_t end) const {
  // Map the range's last byte; a dropped character right after it stays outside the range.
  std::size_t last = end - 1;
  auto it = std::upper_bound(edits_.begin(), edits_.end(), last,
                             [](std::size_t pos, const Edit& e) { return pos < e.norm_begin; });
  if (it == edits_.begin()) return end;
  const Edit& e = *(it - 1);
  if (last < e.norm_end) return e.orig_end;
  return e.orig_end + (last - e.norm_end) + 1;
}

std::size_t NormalizedText::OriginalBegin(std::size_t begin, std::size_t* cursor) const {
  // *cursor: the number of edits starting at or before the previous argument.
  std::size_t i = *cursor;
  while (i < edits_.size() && edits_[i].norm_begin <= begin) ++i;
  *cursor = i;
  if (i == 0) return begin;
  const Edit& e = edits_[i - 1];
  if (begin < e.norm_end) return e.orig_begin;
  return e.orig_end + (begin - e.norm_end);
}

std::size_t NormalizedText::OriginalEnd(std::size_t end, std::size_t* cursor) const {
  std::size_t last = end - 1, i = *cursor;
  while (i < edits_.size() && edits_[i].norm_begin <= last) ++i;
  *cursor = i;
  if (i == 0) return end;
  const Edit& e = edits_[i - 1];
  if (last < e.norm_end) return e.orig_end;
  return e.orig_end + (last - e.norm_end) + 1;
}

}  // namespace airlock::policy::internal
