// Small text helpers shared by modules that produce markup (the template interpreter's `escape`
// filter, the assessment's HTML report) or print untrusted strings to a terminal (file names,
// key names, predicates, anything a model file, a client or a remote endpoint chose).
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <string_view>

namespace airlock::core {

// `s` with & < > " ' replaced by &amp; &lt; &gt; &#34; &#39; (the set and entities of Jinja's
// escape filter), safe inside HTML text and quoted attribute values.
std::string HtmlEscape(std::string_view s);

// `s` made safe to print on a terminal, on one line: C0 controls (ESC, CR, LF, BS...), DEL and
// bytes that are not valid UTF-8 become \xNN (\n, \r, \t as such), C1 controls (U+0080-U+009F,
// which some terminals obey like ESC) and the bidirectional overrides/isolates (U+202A-U+202E,
// U+2066-U+2069, "Trojan source" reordering) become \uNNNN, and a backslash becomes \\ so that an
// escape in the output is never ambiguous. Valid printable UTF-8 passes through unchanged.
std::string TerminalSafe(std::string_view s);

// The same for multi-line prose (a model's generated text): newlines, tabs and backslashes pass
// unchanged, everything else TerminalSafe escapes is escaped.
std::string TerminalSafeText(std::string_view s);

// True when TerminalSafe would change anything but backslashes: the string holds a control
// character, a bidirectional override or invalid UTF-8. Used to refuse such names at creation.
bool HasUnsafeTerminalText(std::string_view s);

// Standard base64 (RFC 4648 section 4) with '=' padding. The decoders stay with their formats:
// signed notes need strict decoding, protobuf JSON accepts the URL-safe alphabet too.
std::string Base64Encode(std::string_view bytes);

// Appends the UTF-8 bytes of `cp` (at most U+1FFFFF; surrogates are encoded as they are): callers
// first apply their own rule for values that are not scalar values (replace, refuse, or keep
// them, as Python's surrogatepass does).
void AppendUtf8(char32_t cp, std::string& out);

// `s` with A-Z mapped to a-z; other bytes (UTF-8 included) unchanged.
std::string AsciiLower(std::string_view s);

// True when `s` ends with `lower_suffix` ignoring ASCII case (`lower_suffix` is lower case):
// file extensions, "MODEL.PKL" ends with ".pkl". Case-sensitive tests use string_view::ends_with.
bool EndsWithIgnoreCase(std::string_view s, std::string_view lower_suffix);

// A name from untrusted input for a one-line message: in single quotes, control characters as
// '?', cut after `max` bytes with "..." (archive member names in scan findings).
std::string QuoteName(std::string_view name, std::size_t max = 200);

// The deepest nesting of '[' and '{' outside strings in a JSON text, found in one pass without
// parsing or recursion, so that hostile input (a request, a reply, a schema, a model's output) can
// be refused before a parser or a compiler recurses into it. Stops as soon as the depth passes
// `limit` (and returns that depth). A closing bracket never takes the depth below zero.
std::size_t JsonNestingDepth(std::string_view text,
                             std::size_t limit = std::numeric_limits<std::size_t>::max());

// The end (one past) of the JSON object or array that opens at text[start] ('{' or '['),
// matching brackets outside strings; npos when it does not close within `text`.
std::size_t JsonBracketedEnd(std::string_view text, std::size_t start);

}  // namespace airlock::core
