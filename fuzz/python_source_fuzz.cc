// Python source analysis (scan/internal/python_source.h) on any bytes: never crashes, hangs or
// reads out of bounds; then the whole .py path of the scanner (python_analyzer.cc).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "scan/internal/python_source.h"
#include "scan/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  airlock::scan::internal::PyLimits limits;
  limits.max_tokens = 200'000;
  auto analysis = airlock::scan::internal::AnalyzePythonSource(text, limits);
  (void)analysis;
  auto report = airlock::scan::ScanBuffer(std::as_bytes(std::span<const std::uint8_t>(data, size)),
                                          "modeling_fuzz.py", {});
  (void)report;
  return 0;
}
