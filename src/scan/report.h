// Renders a ScanReport as human text, JSON (schema in docs/scan-output.md) or SARIF 2.1.0.
// Exit codes for `airlock scan` are decided here too so that the CLI and the docs agree.
#pragma once

#include <string>

#include "scan/scan.h"

namespace airlock::scan {

// Exit codes of `airlock scan` (documented in the README and --help).
inline constexpr int kExitClean = 0;         // every file clean
inline constexpr int kExitFindings = 1;      // a finding at or above --fail-on
inline constexpr int kExitInconclusive = 2;  // some file could not be fully vetted
// A usage or tool error is 3, the CLI's kExitError (cli/exit_codes.h).

int ExitCodeFor(const ScanReport& report, Severity fail_on);

std::string RenderText(const ScanReport& report, bool color, bool verbose);
std::string RenderJson(const ScanReport& report);
// SARIF 2.1.0 for GitHub code scanning: paths inside `base_dir` (default: the current folder)
// become URIs relative to the %SRCROOT% base id, others absolute file:// URIs; every result has
// a region (startLine: the finding's line in text formats, else 1 plus the byte offset), a
// partial fingerprint, and a rule with full description, help and a helpUri into docs/rules.md.
std::string RenderSarif(const ScanReport& report, const std::string& base_dir = "");

}  // namespace airlock::scan
