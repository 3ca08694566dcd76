// Process exit codes of the `airlock` commands, one meaning each across commands, so that a script
// can tell "the check said no" (1) from "the tool could not do its job" (3). Each command's --help
// says which of them it uses and what 1 and 2 mean for it.
#pragma once

namespace airlock::cli {

inline constexpr int kExitOk = 0;
// The command ran and its answer is negative: a finding (scan), a signature that does not verify,
// an inconsistent log, a refused configuration, an assessment that is not clean.
inline constexpr int kExitFailed = 1;
// The command ran but could not finish every part: scan inconclusive, inspect found the file
// malformed, some probes failed to run, a local model would not load.
inline constexpr int kExitIncomplete = 2;
// Usage error, or a tool error (unreadable input, I/O, network, sandbox).
inline constexpr int kExitError = 3;

}  // namespace airlock::cli
