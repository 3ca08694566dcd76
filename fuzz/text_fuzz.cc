// Fuzzes the terminal neutralizer (core/text.h) that every command applies to strings from model
// files, bundles, key databases and remote endpoints: whatever the bytes, the output is valid
// UTF-8 without C0/C1 controls, DEL or bidi overrides, and a string judged safe passes unchanged
// (backslashes aside).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/text.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  using namespace airlock::core;
  std::string safe = TerminalSafe(input);
  if (HasUnsafeTerminalText(safe)) std::abort();
  for (std::size_t i = 0; i < safe.size(); ++i) {
    auto b = static_cast<unsigned char>(safe[i]);
    if (b < 0x20 || b == 0x7f) std::abort();
    if (b == 0xc2 && i + 1 < safe.size() && static_cast<unsigned char>(safe[i + 1]) < 0xa0)
      std::abort();  // U+0080-U+009F
  }
  if (!HasUnsafeTerminalText(input)) {
    std::string doubled;
    for (char c : input) doubled += c == '\\' ? std::string("\\\\") : std::string(1, c);
    if (doubled != safe) std::abort();
  }
  // Escaping only ever adds characters.
  if (safe.size() < input.size()) std::abort();
  return 0;
}
