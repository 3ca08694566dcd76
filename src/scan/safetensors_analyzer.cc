// safetensors: strict header validation (formats/safetensors.h) reported as findings, and
// __metadata__ strings checked for code, shell commands, scripts and unexpected URLs. Tensor
// data is never read.
#include <string>

#include "formats/safetensors.h"
#include "scan/internal/scanner.h"
#include "scan/internal/suspicious_text.h"

namespace airlock::scan::internal {

namespace {

namespace st = formats::safetensors;

// Errors only a crafted file produces are high (parser differentials, overlapping or
// self-inconsistent tensors); others (truncation, unknown dtype, oversize) are medium.
Severity FatalSeverity(std::string_view code) {
  for (std::string_view high : {"duplicate-key", "tensor-overlap", "size-overflow",
                                "tensor-size-mismatch", "trailing-data", "non-integer"}) {
    if (code == high) return Severity::kHigh;
  }
  return Severity::kMedium;
}

}  // namespace

void AnalyzeSafetensors(Scanner& s, const Target& t) {
  s.SetFormat("safetensors");
  st::ParseFailure failure;
  auto file = st::File::Parse(t.data, {}, &failure);
  if (!file.ok()) {
    s.Incomplete(t, "safetensors." + failure.code, "safetensors header invalid: " + failure.message,
                 failure.offset, FatalSeverity(failure.code));
    return;
  }
  for (const st::Issue& i : file->issues()) {
    s.Add(t, "safetensors." + i.code,
          i.code == "unknown-field" ? Severity::kMedium : Severity::kLow, i.message, i.offset);
  }
  // Loaders hand __metadata__ to Python code (transformers reads "format"); it should hold short
  // descriptive strings, never code.
  const std::string_view header = file->header_json();
  for (const auto& [key, value] : file->metadata()) {
    // Offset of the key's JSON string in the file (best effort: escaped keys fall back to 8).
    std::uint64_t at = 8;
    if (auto pos = header.find("\"" + key + "\""); pos != std::string_view::npos) at = 8 + pos;
    for (std::string_view text : {std::string_view(key), std::string_view(value)}) {
      for (const TextMatch& m : FindSuspiciousText(text)) {
        const auto [rule, sev] = MetadataTextFinding("safetensors", m.kind, Severity::kMedium);
        s.Add(t, rule, sev,
              "__metadata__ \"" + Printable(key, 60) + "\" contains " +
                  std::string(TextKindName(m.kind)) + ": \"" + m.excerpt + "\"",
              at);
      }
    }
  }
}

}  // namespace airlock::scan::internal
