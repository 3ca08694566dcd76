// Internal: the literal text a parsed chat template can write into the prompt, with where it lands
// (see PromptText in template/analyze.h), and the language-independent test that tells natural
// language from special tokens, role markers, separators and tool-call scaffolding.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "template/analyze.h"
#include "template/internal/ast.h"
#include "template/template.h"

namespace airlock::tmpl::internal {

struct PromptTextResult {
  std::vector<PromptText> pieces;  // one per (offset, text), most exposed placement kept
  bool truncated = false;          // more pieces than the cap: the list is incomplete
};

// Every piece of constant text `program` can emit, on every branch: template text, string
// literals in output positions (concatenations folded, conditional branches separately), values
// of variables/namespace attributes/macros that reach an output, and replacement arguments.
// Literals that only compare, index or test are left out. Bounded: at most `max_pieces`.
PromptTextResult CollectPromptText(const Program& program, std::size_t max_pieces = 4000);

// Evaluates `expr` with the template interpreter, with no variables and under `limits`; nullopt
// when evaluation fails or hits a limit. Used to fold expressions built only from constants.
std::optional<Value> EvaluateClosedExpression(const Program& program, const Expr& expr,
                                              const Limits& limits);

// Words of natural language in `text` once special tokens (<|...|>, <｜...｜>, <tag>, </tag>,
// [INST]-style markers) are removed: runs of letters/digits containing a letter, except a word
// glued to the special token before it (a role name) and a quoted JSON key; in scripts written
// without spaces (Han, kana, Thai...: ICU line-break classes ID, SA, CJ) every two characters
// count as a word.
std::size_t NaturalLanguageWords(std::string_view text);
// Natural language: at least three words. Role labels ("User: "), separators and JSON tool-call
// scaffolding have fewer.
bool IsNaturalLanguage(std::string_view text);

// The form used to compare literal text with the registry: whitespace runs collapsed to one
// space, trimmed.
std::string NormalizeLiteral(std::string_view text);

}  // namespace airlock::tmpl::internal
