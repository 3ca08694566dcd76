// GGUF parser fuzz target: any bytes must parse or fail cleanly; when they parse, every accessor,
// the model-level checks and the inspect summary must stay within bounds.
#include <cstddef>
#include <cstdint>
#include <span>

#include "formats/gguf.h"
#include "scan/inspect.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace gguf = airlock::formats::gguf;
  auto bytes = std::as_bytes(std::span<const std::uint8_t>(data, size));
  gguf::ParseOptions options;
  options.max_index_entries = 1u << 20;
  auto file = gguf::File::Parse(bytes, options);
  if (!file.ok()) return 0;
  std::uint64_t sink = 0;
  for (const gguf::KeyValue& kv : file->metadata()) {
    sink += kv.value.AsUint().value_or(0) + kv.value.AsString().value_or("").size();
    if (auto a = kv.value.AsArray()) {
      std::uint64_t n = a->size() < 64 ? a->size() : 64;
      for (std::uint64_t i = 0; i <= n; ++i) {  // one past the end on purpose
        sink += a->StringAt(i).value_or("").size();
        sink += a->UintAt(i).value_or(0) + (a->FloatAt(i).value_or(0) > 0.5 ? 1 : 0);
        sink += static_cast<std::uint32_t>(a->At<std::int32_t>(i).value_or(0));
        if (auto inner = a->ArrayAt(i)) sink += inner->size();
      }
    }
  }
  for (const gguf::TensorInfo& t : file->tensors()) {
    auto d = file->TensorData(t);
    if (!d.empty())
      sink += static_cast<std::uint8_t>(d[0]) + static_cast<std::uint8_t>(d[d.size() - 1]);
    if (file->FindTensor(t.name) == nullptr) __builtin_trap();
  }
  sink += gguf::CheckModelMetadata(*file).size();
  auto summary = airlock::scan::InspectBuffer(bytes, "fuzz.gguf");
  if (summary.ok()) sink += airlock::scan::RenderInspectJson(*summary).size();
  if (sink == 0xdeadbeef) return 1;
  return 0;
}
