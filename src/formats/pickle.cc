// pickle::Parse and the entry points of formats/pickle.h; the VM itself is in pickle_vm.cc and
// its siblings (see formats/internal/pickle_vm.h).
#include "formats/pickle.h"

#include "formats/internal/pickle_vm.h"

namespace airlock::formats::pickle {

std::string Ref::Display() const {
  if (is_global) return module + "." + qualname;
  return origin.empty() ? "<object>" : "<" + origin + ">";
}

ParseResult Parse(std::span<const std::byte> data, std::uint64_t start, const Limits& limits) {
  ParseResult out;
  if (start > data.size()) start = data.size();
  internal::Machine m(data, start, limits, out, 0);
  m.Run();
  return out;
}

bool LooksLikePickleStart(std::span<const std::byte> data, std::uint64_t offset) {
  using enum internal::Op;
  if (offset >= data.size()) return false;
  auto b = [&](std::uint64_t k) { return static_cast<std::uint8_t>(data[offset + k]); };
  std::uint64_t left = data.size() - offset;
  if (b(0) == kProto) return left >= 2 && b(1) <= 5;
  switch (b(0)) {
    case kMark:
    case kEmptyList:
    case kEmptyDict:
    case kEmptyTuple:
    case kNone:
      return left >= 2;
    case kGlobal:
    case kInst:
    case kUnicode:
    case kInt:
    case kLong:
    case kString:
    case kPersId:
    case kFloat:
    case kGet: {
      // A text argument: printable up to a newline.
      for (std::uint64_t k = 1; k < left && k < 256; ++k) {
        std::uint8_t c = b(k);
        if (c == '\n') return k > 1;
        if (c < 0x20 || c >= 0x7f) return false;
      }
      return false;
    }
    default:
      return false;
  }
}

}  // namespace airlock::formats::pickle
