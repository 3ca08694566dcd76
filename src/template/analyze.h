// AnalyzeTemplate: static review of a chat template for the scanner. Parses the source with the
// same parser the renderer uses and walks the AST (nothing is rendered); when the source does not
// parse, falls back to a lexical search so a broken but malicious template is still flagged.
//
// Rule ids (stable; the scanner reports them as findings):
//   template.parse-error          does not parse: could not be fully vetted (incomplete)
//   template.dunder-access        attribute/subscript/name starting with "_" (SSTI traversal)
//   template.attr-gadget          |attr(...) or map/selectattr/... with an "_" or computed name
//   template.format-gadget        str.format / |format / "%" formatting
//   template.computed-attribute   subscript with a key built from strings at render time
//   template.dangerous-global     Jinja/Flask/Python pivot names (cycler, self, config, getattr...)
//   template.unknown-callable     call of a function or method the sandbox does not provide
//   template.unknown-filter       filter the sandbox does not provide
//   template.obfuscation          escape sequences spelling printable ASCII ("\x5f")
//   template.instruction-injection  literal text that reads like hidden instructions
//   template.url-literal          a URL in template text
//   template.oversized            unusually large template
//   template.unknown-variable     a variable outside the documented chat-template context (info)
// Thread-safety: reentrant.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::tmpl {

enum class FindingSeverity { kInfo = 0, kLow, kMedium, kHigh, kCritical };

struct TemplateFinding {
  std::string rule_id;
  FindingSeverity severity = FindingSeverity::kInfo;
  std::string message;
  std::size_t offset = 0;  // byte offset in the template source
};

struct TemplateAnalysis {
  bool parsed = false;                    // false: the findings come from the lexical fallback only
  std::string parse_error;                // the parser's message when !parsed
  std::vector<TemplateFinding> findings;  // sorted by offset, deduplicated
};

struct AnalysisOptions {
  std::size_t oversized_bytes = 128u << 10;  // template.oversized above this
  // Variables the caller passes besides the standard chat context (messages, tools, ...).
  std::vector<std::string> extra_known_variables;
};

// Never fails: any problem becomes a finding.
TemplateAnalysis AnalyzeTemplate(std::string_view source, const AnalysisOptions& options = {});

}  // namespace airlock::tmpl
