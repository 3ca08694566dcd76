// Internal to the scan module: heuristics for attacker-controlled free text that should never
// contain code (safetensors __metadata__, GGUF general.* strings, config JSON values). RE2 only
// (linear time on untrusted text). The caller decides severities per context.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "scan/scan.h"

namespace airlock::scan::internal {

enum class TextKind {
  kPythonCode,   // os.system, subprocess, exec(, eval(, __import__, import os ...
  kShell,        // rm -rf, curl|sh, wget URL, chmod 777, bash -c, nc -e ...
  kScript,       // <script>, javascript:, document.cookie
  kObfuscation,  // runs of \xNN escapes, long base64 blobs fed to decoders
  kUrl,          // http(s) URL to a host outside the well-known model hubs
};

std::string_view TextKindName(TextKind k);

struct TextMatch {
  TextKind kind;
  std::string excerpt;  // the matched text, truncated and made printable
};

// All distinct kinds found in `text` (one match per kind). URLs whose host is a well-known
// model or code hub (huggingface.co, github.com, ...) are not reported.
std::vector<TextMatch> FindSuspiciousText(std::string_view text);

// The finding for suspicious text in a format's free-text metadata: "<family>.metadata-code"
// (Python or shell code: high; scripts or obfuscation: medium) or "<family>.metadata-url" with
// `url_severity` (what an unusual URL means differs per format).
struct MetadataFinding {
  std::string rule;
  Severity severity;
};
MetadataFinding MetadataTextFinding(std::string_view family, TextKind kind, Severity url_severity);

// Printable, single-line, at most `max` characters (for messages).
std::string Printable(std::string_view s, std::size_t max = 80);

}  // namespace airlock::scan::internal
