// airlock::tmpl::Template: a sandboxed interpreter for the Jinja subset that chat templates use
// (Hugging Face semantics: trim_blocks and lstrip_blocks on, one trailing newline dropped,
// tojson as transformers defines it, loop controls, {% generation %}).
//
// Sandbox: a template sees only the Value passed to Render plus the globals range, dict,
// namespace, raise_exception and strftime_now. There are no host objects; attribute names that
// start with "_" are refused, as are str.format and the attr filter ("%" formatting and the
// format filter are printf-style and read dict keys only, never attributes). Every
// render is bounded by Limits (work steps, output size, string size, macro depth) and fails with
// a Status, never a hang or a crash.
// Ownership: a parsed Template is immutable and cheap to copy. Thread-safety: Render is const and
// may run concurrently on one Template (with distinct Value graphs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "template/value.h"

namespace airlock::tmpl {

namespace internal {
struct Program;
}

struct ParseOptions {
  bool trim_blocks = true;             // drop the newline after a block tag (HF default)
  bool lstrip_blocks = true;           // drop indentation before a block tag (HF default)
  bool keep_trailing_newline = false;  // Jinja default: drop one trailing newline
  int max_nesting = 200;               // nested blocks/expressions beyond this: kLimitExceeded
};

struct Limits {
  std::uint64_t max_steps = 20'000'000;      // evaluation work units (nodes + bytes/16)
  std::size_t max_output_bytes = 16u << 20;  // rendered text
  std::size_t max_string_bytes = 16u << 20;  // any single string or list built on the way
  int max_call_depth = 64;                   // nested macro calls
};

struct RenderOptions {
  Limits limits;
  // The clock strftime_now() reads (seconds since the epoch, local time zone); nullopt = now.
  std::optional<std::int64_t> now_unix_seconds;
};

// A rendered template: the text and which byte ranges of it came from input-marked strings.
struct Rendered {
  std::string text;
  std::vector<InputSpan> input;  // sorted, non-overlapping
};

class Template {
 public:
  // Parses `source`. Errors: kCorrupt "template: syntax error at byte N: ..." for anything
  // outside the supported subset, kLimitExceeded for nesting deeper than max_nesting.
  static Result<Template> Parse(std::string source, const ParseOptions& options = {});

  // Renders with `variables` (a dict; other kinds mean no variables). Errors: kInvalidArgument
  // for template runtime errors (undefined attribute access, type errors, raise_exception()
  // whose message is included), kPermissionDenied for refused sandbox operations,
  // kLimitExceeded when a Limits cap is hit.
  Result<Rendered> Render(const Value& variables, const RenderOptions& options = {}) const;

  const std::string& source() const;

 private:
  std::shared_ptr<const internal::Program> program_;
};

}  // namespace airlock::tmpl
