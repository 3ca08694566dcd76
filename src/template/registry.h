// Registry of official chat templates: the templates published in the tokenizer_config.json of
// the model families Airlock supports (Qwen2, Qwen2.5, Qwen3, QwQ, DeepSeek-V2/V3/R1 and the R1
// distills, Llama 3.x, Mistral/Mixtral). Only facts are stored, never the templates: the SHA-256
// of each template's normalized source, its family and version, and short digests of every
// constant piece of text it can emit (the allowed literals). tools/template_facts.cc computes
// these facts from template files; see docs/template.md for how the table was built.
// Thread-safety: the table is immutable; every function is reentrant.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "template/analyze.h"

namespace airlock::tmpl {

struct OfficialTemplate {
  const char* family;   // "Qwen2.5"
  const char* version;  // which published file: "Qwen2.5-7B-Instruct tokenizer_config.json"
  const char* digest;   // TemplateDigest of the template (64 hex digits)
  std::span<const char* const> literals;  // LiteralDigest of every emitted piece, sorted
};

std::span<const OfficialTemplate> OfficialTemplates();

// SHA-256 (hex) of the normalized source: CRLF/CR to LF, leading/trailing whitespace removed.
std::string TemplateDigest(std::string_view source);
// First 16 hex digits of the SHA-256 of NormalizeLiteral(text) (whitespace runs collapsed).
std::string LiteralDigest(std::string_view text);
// Whether some official template emits this text.
bool IsOfficialLiteral(std::string_view text);

// The facts the registry stores for one template source: digest and sorted literal digests
// (empty literals and ok=false when the source does not parse).
struct TemplateFacts {
  bool ok = false;
  std::string digest;
  std::vector<std::string> literals;
};
TemplateFacts ComputeTemplateFacts(std::string_view source);

// Compares a parsed template (its source and its prompt text) with the registry.
RegistryVerdict MatchRegistry(std::string_view source, const std::vector<PromptText>& pieces);

}  // namespace airlock::tmpl
