// Whole-scanner fuzz target: any bytes, any detected format, must produce a report without
// crashing, hanging or leaking.
#include <cstddef>
#include <cstdint>
#include <span>

#include "scan/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  airlock::scan::ScanOptions options;
  options.limits.max_decompressed_bytes = 64u << 20;
  options.limits.max_member_bytes = 16u << 20;
  options.limits.max_pickle_ops = 1'000'000;
  auto report = airlock::scan::ScanBuffer(
      std::as_bytes(std::span<const std::uint8_t>(data, size)), "fuzz.bin", options);
  (void)report;
  return 0;
}
