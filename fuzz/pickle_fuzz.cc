// Pickle emulator fuzz target: any bytes, parsed as concatenated pickle streams directly with
// formats::pickle::Parse (no format detection in front), then scanned through the pickle
// analyzer path. Must never crash, hang, leak or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/pickle.h"
#include "scan/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace pk = airlock::formats::pickle;
  auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  pk::Limits limits;
  limits.max_ops = 200'000;
  limits.max_values = 200'000;
  limits.max_memo = 50'000;
  limits.max_decoded_bytes = 16u << 20;
  std::uint64_t pos = 0;
  for (int stream = 0; stream < 16 && pos < size; ++stream) {
    pk::ParseResult r = pk::Parse(bytes, pos, limits);
    for (const auto& e : r.events) {
      for (auto b : e.byte_args) {
        // Touch every exposed byte so ASan checks the views are in bounds.
        volatile std::uint8_t sink = 0;
        for (auto c : b) sink ^= static_cast<std::uint8_t>(c);
        (void)sink;
      }
      (void)e.ref.Display();
    }
    if (!r.ok() || r.end <= pos) break;
    pos = r.end;
  }
  airlock::scan::ScanOptions options;
  options.limits.max_pickle_ops = 200'000;
  options.limits.max_decompressed_bytes = 16u << 20;
  options.limits.max_member_bytes = 16u << 20;
  auto report = airlock::scan::ScanBuffer(bytes, "fuzz.pkl", options);
  (void)report;
  return 0;
}
