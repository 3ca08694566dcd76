// Text as the detectors read it (private to the policy module). Evasions by Unicode and control
// characters are undone before any pattern runs, and every byte of the normalized text maps back
// to the original bytes it came from, so that redaction cuts exactly the original characters:
//   * each character is replaced by its NFKC (compatibility) decomposition: full-width digits and
//     letters, full-width @, no-break spaces, mathematical alphanumerics;
//   * letters that are confusable with an ASCII letter under Unicode TS #39 (ICU's spoof checker
//     skeletons: Cyrillic а/ѕ/А, Greek Ο/Α/Κ...) are replaced by that ASCII letter, keeping case;
//   * invisible format characters (zero-width space/joiners, soft hyphen, word joiner, bidi
//     controls, variation selectors) and control characters other than \t \n \v \f \r (NUL,
//     ESC, DEL, C1 controls) are dropped.
// Text that needs none of this keeps its invalid UTF-8 bytes; text that is normalized reads them
// as U+FFFD, so that bytes on either side of a dropped control never join into a character that
// was not normalized. The per-character mapping is computed once per process
// (a table over the first two Unicode planes, a few milliseconds); scanning text only does table
// look-ups, and text that needs none of this (ASCII without controls, CJK text...) is recognized in
// one pass without building anything.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::policy::internal {

class NormalizedText {
 public:
  // Normalizes `in` into this object. Returns false, leaving text() empty, when normalization
  // changes nothing (then `in` itself is what the detectors read).
  bool Assign(std::string_view in);

  const std::string& text() const { return text_; }
  // The original byte range covered by normalized bytes [begin, end) (begin < end).
  std::size_t OriginalBegin(std::size_t begin) const;
  std::size_t OriginalEnd(std::size_t end) const;
  // The same for a run of calls with non-decreasing arguments (sorted, disjoint findings):
  // `*cursor` (0 before the first call; one per kind of call) remembers where the previous
  // look-up ended, so a run costs one pass over the edits instead of a search per call.
  std::size_t OriginalBegin(std::size_t begin, std::size_t* cursor) const;
  std::size_t OriginalEnd(std::size_t end, std::size_t* cursor) const;

 private:
  // One replaced stretch: normalized bytes [norm_begin, norm_end) come from original bytes
  // [orig_begin, orig_end). Between edits, bytes are copied one to one.
  struct Edit {
    std::size_t norm_begin, norm_end, orig_begin, orig_end;
  };
  void Replace(std::string_view in, std::size_t orig_begin, std::size_t orig_end,
               std::string_view with);
  std::string text_;
  std::vector<Edit> edits_;
  std::size_t copied_to_ = 0;  // original bytes before this are already in text_
};

// Whether Assign would change `in` (used by the fast path; exposed for tests).
bool NeedsNormalization(std::string_view in);

}  // namespace airlock::policy::internal
