#include "engine/internal/tokenizer_unicode.h"

#include "core/text.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <array>
#include <atomic>
#include <memory>
#include <mutex>

namespace airlock::engine::internal {
namespace {

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr uint32_t kBlockSize = 256;
constexpr uint32_t kBlockCount = (kMaxCodePoint + 1) / kBlockSize;

// Lazily filled table of collapsed classes for code points >= 128.
class CategoryTable {
 public:
  static CategoryTable& Get() {
    static CategoryTable* table = new CategoryTable();  // never destroyed: used from any thread
    return *table;
  }

  uint8_t Lookup(uint32_t cp) {
    if (cp > kMaxCodePoint) return kCollapsedOther;
    uint32_t block = cp / kBlockSize;
    if (!ready_[block].load(std::memory_order_acquire)) FillBlock(block);
    return classes_[cp];
  }

 private:
  CategoryTable() {
    int error = 0;
    PCRE2_SIZE error_offset = 0;
    static constexpr char kPattern[] = "(\\p{N})|(\\p{L})|(\\p{P})|(\\p{M})|(\\p{S})";
    code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_ANCHORED, &error, &error_offset, nullptr);
  }

  void FillBlock(uint32_t block) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (ready_[block].load(std::memory_order_relaxed)) return;
    pcre2_match_data* match =
        code_ ? pcre2_match_data_create_from_pattern(code_, nullptr) : nullptr;
    for (uint32_t cp = block * kBlockSize; cp < (block + 1) * kBlockSize; ++cp) {
      classes_[cp] = Classify(cp, match);
    }
    if (match) pcre2_match_data_free(match);
    ready_[block].store(true, std::memory_order_release);
  }

  uint8_t Classify(uint32_t cp, pcre2_match_data* match) const {
    if (IsWhitespace(cp)) return kCollapsedSpace;
    if (code_ == nullptr || match == nullptr) return kCollapsedOther;
    if (cp >= 0xD800 && cp <= 0xDFFF) return kCollapsedOther;  // surrogates: category Cs
    std::string utf8;
    AppendUtf8(cp, &utf8);
    int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(utf8.data()), utf8.size(), 0, 0, match,
                         nullptr);
    if (rc < 2) return kCollapsedOther;
    static constexpr uint8_t kByGroup[] = {kCollapsedNumber, kCollapsedLetter, kCollapsedPunct,
                                           kCollapsedMark, kCollapsedSymbol};
    PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match);
    for (int group = 1; group < rc && group <= 5; ++group) {
      if (ovector[2 * group] != PCRE2_UNSET) return kByGroup[group - 1];
    }
    return kCollapsedOther;
  }

  pcre2_code* code_ = nullptr;
  std::mutex mutex_;
  std::array<std::atomic<bool>, kBlockCount> ready_{};
  std::array<uint8_t, kMaxCodePoint + 1> classes_{};
};

struct ByteMap {
  std::array<uint32_t, 256> to_cp{};
  std::array<std::string, 256> to_utf8;
  ByteMap() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
      to_cp[b] = printable ? static_cast<uint32_t>(b) : next++;
      AppendUtf8(to_cp[b], &to_utf8[b]);
    }
  }
};

const ByteMap& GetByteMap() {
  static const ByteMap* map = new ByteMap();
  return *map;
}

}  // namespace

void DecodeUtf8Lenient(std::string_view text, std::vector<uint32_t>* out) {
  out->clear();
  out->reserve(text.size());
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  auto cont = [&](std::size_t k) { return (s[k] & 0xC0) == 0x80; };
  while (i < n) {
    uint8_t b = s[i];
    if (b < 0x80) {
      out->push_back(b);
      i += 1;
    } else if ((b & 0xE0) == 0xC0 && i + 1 < n && cont(i + 1)) {
      out->push_back(((b & 0x1Fu) << 6) | (s[i + 1] & 0x3Fu));
      i += 2;
    } else if ((b & 0xF0) == 0xE0 && i + 2 < n && cont(i + 1) && cont(i + 2)) {
      out->push_back(((b & 0x0Fu) << 12) | ((s[i + 1] & 0x3Fu) << 6) | (s[i + 2] & 0x3Fu));
      i += 3;
    } else if ((b & 0xF8) == 0xF0 && i + 3 < n && cont(i + 1) && cont(i + 2) && cont(i + 3)) {
      uint32_t cp = ((b & 0x07u) << 18) | ((s[i + 1] & 0x3Fu) << 12) | ((s[i + 2] & 0x3Fu) << 6) |
                    (s[i + 3] & 0x3Fu);
      out->push_back(cp <= kMaxCodePoint ? cp : kReplacementChar);
      i += 4;
    } else {
      out->push_back(kReplacementChar);
      i += 1;
    }
  }
}

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp > kMaxCodePoint) cp = kReplacementChar;
  core::AppendUtf8(cp, *out);
}

uint8_t CollapsedClass(uint32_t cp) { return CategoryTable::Get().Lookup(cp); }

bool IsWhitespace(uint32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

uint32_t ByteToCodePoint(uint8_t byte) { return GetByteMap().to_cp[byte]; }

std::string_view ByteToUtf8(uint8_t byte) { return GetByteMap().to_utf8[byte]; }

int CodePointToByte(uint32_t cp) {
  if (cp < 256) {
    bool printable = (cp >= 0x21 && cp <= 0x7E) || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE);
    return printable ? static_cast<int>(cp) : -1;
  }
  static const std::array<int16_t, 128> kReverse = [] {
    std::array<int16_t, 128> r{};
    r.fill(-1);
    const ByteMap& map = GetByteMap();
    for (int b = 0; b < 256; ++b) {
      if (map.to_cp[b] >= 256) r[map.to_cp[b] - 256] = static_cast<int16_t>(b);
    }
    return r;
  }();
  if (cp - 256 < kReverse.size()) return kReverse[cp - 256];
  return -1;
}

}  // namespace airlock::engine::internal
