// ZIP reader fuzz target: parse any bytes as an archive, extract every entry under small caps,
// then run the whole zip analyzer on them. Must never crash, hang, leak or over-allocate.
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/zip.h"
#include "scan/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  airlock::formats::zip::ParseLimits limits;
  limits.max_entries = 10'000;
  auto archive = airlock::formats::zip::Parse(bytes, limits);
  if (archive.has_value()) {
    airlock::formats::zip::ExtractOptions opt;
    opt.max_bytes = 4u << 20;
    opt.ratio_floor = 64u << 10;
    std::uint64_t budget = 16u << 20;
    opt.charge = [&](std::uint64_t n) {
      if (n > budget) return false;
      budget -= n;
      return true;
    };
    for (const auto& e : archive->entries) {
      auto m = airlock::formats::zip::Extract(bytes, e, opt);
      (void)m;
    }
  }
  airlock::scan::ScanOptions options;
  options.limits.max_decompressed_bytes = 32u << 20;
  options.limits.max_member_bytes = 8u << 20;
  options.limits.max_members = 10'000;
  options.limits.max_pickle_ops = 200'000;
  auto report = airlock::scan::ScanBuffer(bytes, "fuzz.zip", options);
  (void)report;
  return 0;
}
