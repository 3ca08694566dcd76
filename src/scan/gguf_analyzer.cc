// GGUF: structural validation (formats/gguf.h) reported as findings, model-level consistency
// checks, chat templates handed to the template analyzer, and free-text metadata heuristics.
// Only the header is read (plus the few padding bytes after each tensor); never tensor data.
#include <string>

#include "formats/gguf.h"
#include "scan/internal/scanner.h"
#include "scan/internal/suspicious_text.h"

namespace airlock::scan::internal {

namespace {

namespace gguf = formats::gguf;

// Fatal parse errors. Those that only a crafted file produces (counts, lengths and sizes that
// C readers have overflowed on: the GGUF parser CVEs) are high; those an honest file can hit
// (truncated download, newer version, unsupported type) are medium. A length that runs past the
// end of the file but is under the 1 GiB cap looks like truncation, so it is medium too. All make
// the scan incomplete.
Severity FatalSeverity(std::string_view code) {
  for (std::string_view high :
       {"bad-tensor-count", "bad-kv-count", "string-too-long", "array-too-long", "bad-n-dims",
        "bad-shape", "tensor-too-large", "tensor-overlap", "tensor-gap", "misaligned-offset",
        "duplicate-key", "duplicate-tensor-name", "empty-key", "bad-alignment", "bad-value-type",
        "tensor-name-too-long"}) {
    if (code == high) return Severity::kHigh;
  }
  return Severity::kMedium;
}

// Non-fatal anomalies from the parser and from CheckModelMetadata.
Severity IssueSeverity(std::string_view code) {
  // Exploit classes against llama.cpp's vocabulary/hparams loaders.
  for (std::string_view high :
       {"special-token-out-of-range", "bad-byte-token", "hparam-block-count",
        "vocab-length-mismatch", "vocab-type", "hparam-shape-mismatch"}) {
    if (code == high) return Severity::kHigh;
  }
  // Things readers disagree on, or bytes outside the structure: not clean.
  for (std::string_view medium :
       {"trailing-data", "nonzero-padding", "nested-array", "bool-not-0-1", "tensor-name-charset",
        "special-token-type", "hparam-context-length", "hparam-heads", "missing-architecture",
        "hparam-architecture", "vocab-empty"}) {
    if (code == medium) return Severity::kMedium;
  }
  return Severity::kLow;  // invalid-utf8, key-grammar, zero-dim, missing-quantization-version
}

void CheckFreeText(Scanner& s, const Target& t, const gguf::KeyValue& kv, std::string_view text) {
  for (const TextMatch& m : FindSuspiciousText(text)) {
    // An unusual URL in GGUF metadata is common (model cards) and only low.
    const auto [rule, sev] = MetadataTextFinding("gguf", m.kind, Severity::kLow);
    s.Add(t, rule, sev,
          "metadata \"" + Printable(kv.key, 60) + "\" contains " +
              std::string(TextKindName(m.kind)) + ": \"" + m.excerpt + "\"",
          kv.value.offset());
  }
}

}  // namespace

void AnalyzeGguf(Scanner& s, const Target& t) {
  s.SetFormat("gguf");
  gguf::ParseFailure failure;
  auto file = gguf::File::Parse(t.data, {}, &failure);
  if (!file.ok()) {
    s.Incomplete(t, "gguf." + failure.code, "GGUF structure invalid: " + failure.message,
                 failure.offset, FatalSeverity(failure.code));
    return;
  }
  for (const gguf::Issue& i : file->issues()) {
    s.Add(t, "gguf." + i.code, IssueSeverity(i.code), i.message, i.offset);
  }
  for (const gguf::Issue& i : gguf::CheckModelMetadata(*file)) {
    s.Add(t, "gguf." + i.code, IssueSeverity(i.code), i.message, i.offset);
  }

  for (const gguf::KeyValue& kv : file->metadata()) {
    auto text = kv.value.AsString();
    if (!text) continue;
    // tokenizer.chat_template and the named variants tokenizer.chat_template.<name>.
    if (kv.key == "tokenizer.chat_template" || kv.key.starts_with("tokenizer.chat_template.")) {
      AnalyzeTemplateSource(s, t, *text, kv.value.offset() + 8);  // after the u64 length
      continue;
    }
    if (kv.key == "tokenizer.huggingface.json") continue;  // tokenizer data, not prose
    CheckFreeText(s, t, kv, *text);
  }
  // Templates stored as something other than a string are ignored by loaders but suspicious.
  if (const gguf::KeyValue* kv = file->Find("tokenizer.chat_template");
      kv != nullptr && !kv->value.AsString()) {
    s.Add(t, "gguf.template-type", Severity::kMedium, "tokenizer.chat_template is not a string",
          kv->offset);
  }
}

}  // namespace airlock::scan::internal
