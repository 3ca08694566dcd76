// safetensors header fuzz target: any bytes must parse or fail cleanly; parsed tensors must lie
// inside the buffer and the inspect summary must render.
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/safetensors.h"
#include "scan/inspect.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace st = airlock::formats::safetensors;
  auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  st::ParseOptions options;
  options.max_json_values = 100'000;
  auto file = st::File::Parse(bytes, options);
  if (!file.ok()) return 0;
  std::uint64_t sink = 0;
  for (const st::TensorInfo& t : file->tensors()) {
    auto d = file->TensorData(t);
    if (d.size() != t.end - t.begin) __builtin_trap();
    if (!d.empty()) sink += static_cast<std::uint8_t>(d[d.size() - 1]);
  }
  for (const auto& [k, v] : file->metadata()) sink += k.size() + v.size();
  auto summary = airlock::scan::InspectBuffer(bytes, "fuzz.safetensors");
  if (summary.ok()) sink += airlock::scan::RenderInspectText(*summary).size();
  if (sink == 0xdeadbeef) return 1;
  return 0;
}
