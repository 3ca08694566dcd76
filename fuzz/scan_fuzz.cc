// Whole-scanner fuzz target: any bytes, any detected format, must produce a report without
// crashing, hanging or leaking. The first byte picks the file name, so that name-dependent
// detection (.pb, .py, .jinja, .json, pickle extensions) is exercised too.
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "scan/scan.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::array<const char*, 9> kNames = {
      "config.yaml",    "fuzz.bin",    "saved_model.pb",    "model.h5",  "tokenizer_config.json",
      "template.jinja", "weights.pkl", "model.safetensors", "model.gguf"};
  if (size == 0) return 0;
  std::string name = kNames[data[0] % kNames.size()];
  airlock::scan::ScanOptions options;
  options.limits.max_decompressed_bytes = 64u << 20;
  options.limits.max_member_bytes = 16u << 20;
  options.limits.max_pickle_ops = 1'000'000;
  auto report = airlock::scan::ScanBuffer(
      std::as_bytes(std::span<const std::uint8_t>(data + 1, size - 1)), name, options);
  (void)report;
  return 0;
}
