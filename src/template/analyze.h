// AnalyzeTemplate: static review of a chat template for the scanner. Parses the source with the
// same parser the renderer uses and walks the AST (nothing is rendered); when the source does not
// parse, falls back to a lexical search so a broken but malicious template is still flagged.
//
// Rule ids (stable; the scanner reports them as findings):
//   template.parse-error          does not parse: could not be fully vetted (incomplete)
//   template.dunder-access        attribute/subscript/name starting with "_" (SSTI traversal),
//                                  subscript keys included whatever value the template gives them
//                                  (variables, loops, macro arguments...: internal/key_values.h)
//   template.attr-gadget          |attr(...) or map/selectattr/... with an "_" or computed name
//   template.format-gadget        str.format / |format / "%" formatting
//   template.computed-attribute   subscript with a key built from strings at render time, or one
//                                  that may be a computed string containing "_"
//   template.dangerous-global     Jinja/Flask/Python pivot names (cycler, self, config, getattr...)
//   template.unknown-callable     call of a function or method the sandbox does not provide
//   template.unknown-filter       filter the sandbox does not provide
//   template.obfuscation          escape sequences spelling printable ASCII ("\x5f")
//   template.instruction-injection  literal text that reads like hidden instructions
//   template.url-literal          a URL in template text
//   template.oversized            unusually large template
//   template.unknown-variable     a variable outside the documented chat-template context (info)
// Text the template adds to the prompt (every constant piece it can emit, on every branch; see
// PromptText): natural language that no official template of the registry contains is reported
// with the text itself and where it lands:
//   template.injected-text        in a default system prompt, a preamble, the first turn, or
//                                  assistant/system/tool turns (medium: inconclusive)
//   template.injected-user-turn   attached to every user turn (high)
//   template.injected-after-user  inside every user turn, after the user's own text (high)
//   template.injected-after-conversation  after the last message or in the generation prompt
//                                  (medium: inconclusive; vendors' tool instructions live there)
//   template.injected-credential-request  also asks for passwords, keys, codes (high)
//   template.injected-concealment         also tells the model to hide it (high)
//   template.prompt-text          natural-language text of an official template (info)
//   template.prompt-text-limit    too many pieces to enumerate (medium, incomplete)
// Registry of official templates (template/registry.h):
//   template.official             the template is a known official one (info, names it)
//   template.unofficial           it is not; names the closest official one and the literals the
//                                  file adds to it (info)
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

// Where a piece of template text lands in the prompt, least to most exposed to the user's turns.
enum class TextPlacement {
  kDefaultSystem,      // only when the conversation has no system message (a default system prompt)
  kPreamble,           // before the conversation every time, or in a macro/variable used elsewhere
  kFirstTurn,          // with the first message only
  kOtherTurns,         // with every assistant, system or tool message
  kAfterConversation,  // after the last message, or in the generation prompt (vendors put tool
                       // instructions and answer prefills there)
  kUserTurns,          // with every user message (or every message)
  kAfterUser,          // inside a user's turn, after the user's own text
};
const char* PlacementName(TextPlacement p);

// One piece of constant text the template can write into the prompt.
struct PromptText {
  std::string text;  // as emitted (escapes decoded, special tokens included)
  TextPlacement placement = TextPlacement::kPreamble;
  bool natural_language = false;  // more than special tokens, role labels, separators, scaffolding
  bool official = false;          // an official template of the registry has this text
  std::size_t offset = 0;         // byte offset of the literal in the template source
};

// What the registry says about the template (registry.h).
struct RegistryVerdict {
  bool official = false;  // byte-identical (after normalization) to an official template
  std::string family;     // the official one, or the closest one when !official
  std::string version;    // e.g. "Qwen2.5" / "tokenizer_config.json of Qwen2.5-7B-Instruct"
  double similarity = 0;  // share of the closest template's literal pieces found here
  std::vector<std::string> added_literals;  // natural-language pieces the closest one lacks
};

struct TemplateAnalysis {
  bool parsed = false;                    // false: the findings come from the lexical fallback only
  std::string parse_error;                // the parser's message when !parsed
  std::vector<TemplateFinding> findings;  // sorted by offset, deduplicated
  std::vector<PromptText> prompt_text;    // when parsed: every constant piece, in source order
  RegistryVerdict registry;               // when parsed
};

struct AnalysisOptions {
  std::size_t oversized_bytes = 128u << 10;  // template.oversized above this
  // Variables the caller passes besides the standard chat context (messages, tools, ...).
  std::vector<std::string> extra_known_variables;
};

// Whether `text` is natural language rather than special tokens (<|...|>, <tag>, [INST]), role
// labels, separators or tool-call scaffolding: at least three words of letters once special
// tokens are removed, counting two characters as a word in scripts written without spaces (Han,
// kana, Thai...). Language-independent (ICU character properties, no word lists).
bool IsNaturalLanguage(std::string_view text);

// Never fails: any problem becomes a finding.
TemplateAnalysis AnalyzeTemplate(std::string_view source, const AnalysisOptions& options = {});

}  // namespace airlock::tmpl
