// Chat-template vetting for the scanner: parses the template with the template module's parser
// (never renders it) and turns the analyzer's findings into scan findings.
#include "scan/internal/scanner.h"
#include "template/analyze.h"

namespace airlock::scan::internal {
namespace {

Severity ToScanSeverity(tmpl::FindingSeverity s) {
  switch (s) {
    case tmpl::FindingSeverity::kInfo:
      return Severity::kInfo;
    case tmpl::FindingSeverity::kLow:
      return Severity::kLow;
    case tmpl::FindingSeverity::kMedium:
      return Severity::kMedium;
    case tmpl::FindingSeverity::kHigh:
      return Severity::kHigh;
    case tmpl::FindingSeverity::kCritical:
      return Severity::kCritical;
  }
  return Severity::kMedium;
}

}  // namespace

void AnalyzeTemplateSource(Scanner& s, const Target& t, std::string_view source,
                           std::optional<std::uint64_t> offset,
                           std::optional<std::uint64_t> anchor) {
  auto at = [&](std::size_t in_source) -> std::optional<std::uint64_t> {
    if (!offset) return anchor;
    return *offset + in_source;
  };
  if (source.size() > s.limits().max_template_bytes) {
    s.Incomplete(t, "template.limit.size",
                 "chat template of " + std::to_string(source.size()) + " bytes exceeds the " +
                     std::to_string(s.limits().max_template_bytes) + "-byte limit; not analyzed",
                 at(0));
    return;
  }
  tmpl::TemplateAnalysis analysis = tmpl::AnalyzeTemplate(source);
  if (!analysis.parsed) {
    s.Incomplete(t, "template.parse-error",
                 "chat template could not be parsed, so it could not be fully vetted: " +
                     analysis.parse_error,
                 at(0), Severity::kMedium);
  }
  for (const tmpl::TemplateFinding& f : analysis.findings) {
    s.Add(t, f.rule_id, ToScanSeverity(f.severity), "chat template: " + f.message, at(f.offset));
  }
}

}  // namespace airlock::scan::internal
