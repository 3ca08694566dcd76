// .npy header fuzz target: the literal-dict parser and size arithmetic on any bytes, then the
// npy analyzer through the scanner (object arrays hand their payload to the pickle analyzer).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "formats/npy.h"
#include "scan/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Most inputs should reach the dict parser: prefix the magic unless the input already has it.
  std::string buf(reinterpret_cast<const char*>(data), size);
  if (buf.rfind("\x93NUMPY", 0) != 0) buf.insert(0, "\x93NUMPY");
  auto bytes = std::as_bytes(std::span<const char>(buf.data(), buf.size()));
  auto header = airlock::formats::npy::ParseHeader(bytes);
  (void)header;
  airlock::scan::ScanOptions options;
  options.limits.max_pickle_ops = 200'000;
  auto report = airlock::scan::ScanBuffer(bytes, "fuzz.npy", options);
  (void)report;
  return 0;
}
