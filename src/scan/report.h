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
inline constexpr int kExitUsage = 3;         // bad flags, missing paths, tool error

int ExitCodeFor(const ScanReport& report, Severity fail_on);

std::string RenderText(const ScanReport& report, bool color, bool verbose);
std::string RenderJson(const ScanReport& report);
std::string RenderSarif(const ScanReport& report);

}  // namespace airlock::scan
