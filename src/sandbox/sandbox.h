// The sandbox for commands that only read models (scan, inspect, tokenize, run, chat, perplexity,
// verify): once a command knows its inputs and outputs, Apply() drops what it does not need, so a
// parser bug that a hostile model file triggers runs with as little as possible.
//
//  - PR_SET_NO_NEW_PRIVS (no set-uid gain, and what lets an unprivileged process load a filter);
//  - a seccomp filter (libseccomp) under which execve/execveat, ptrace, process_vm_readv/writev,
//    fork/vfork, clone without CLONE_THREAD, unshare/setns, socket/socketpair and io_uring (whose
//    requests would bypass the filter) fail with EPERM. clone3 fails with ENOSYS: seccomp cannot
//    read its flags (they are behind a pointer), and glibc answers ENOSYS by retrying with clone,
//    whose flags the filter does check, so threads keep starting and processes do not;
//  - Landlock (raw syscalls, the ABI detected with LANDLOCK_CREATE_RULESET_VERSION): reads only
//    beneath `read_paths` and the system files a running program needs (shared libraries,
//    ld.so.cache, locale and timezone data, the OpenSSL config, /proc/self, CPU topology under
//    /sys/devices/system/cpu, /dev/null); writes only in the directory of each of
//    `write_paths` (an atomic write creates a temporary beside its target and renames it, so the
//    grant is the directory, not the file; the CLI passes a path inside a private staging folder
//    per output, cli/sandboxing.h); no execution; at ABI 4+ no TCP bind/connect; at ABI
//    6+ no abstract unix sockets or signals to processes outside the sandbox.
//
// The filter and the Landlock domain cannot be lifted; they are inherited by every thread started
// afterwards. Landlock binds only the calling thread, so Apply() refuses to run once the process
// has a second thread: call it before any worker pool starts. A kernel without Landlock (or with
// an ABI lacking network rules) is not an error: the result lists a warning the caller must print.
// Thread-safety: Apply() once, from the main thread, before threads start.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::sandbox {

struct Policy {
  std::vector<std::string> read_paths;  // files, or folders read beneath; missing/empty skipped
  std::vector<std::string>
      write_paths;  // files to be written (their folder is granted); empty skipped
};

struct Applied {
  int landlock_abi = 0;               // 0: the kernel has no Landlock; the file system is open
  bool network_rules = false;         // Landlock also refuses TCP bind/connect (ABI 4+)
  std::vector<std::string> warnings;  // degradations the caller must print, never swallow
};

// The Landlock ABI the running kernel supports, 0 when it has none (or it is disabled).
int LandlockAbi();

// Applies no-new-privs, the seccomp filter and Landlock per `policy` to the calling process.
// Errors: kInvalidArgument when a second thread already runs, kUnavailable when the kernel
// refuses no-new-privs or the seccomp filter, kIo when Landlock is present but a rule cannot be
// added (fail closed: the caller must not go on unsandboxed without being told to).
Result<Applied> Apply(const Policy& policy);

// The environment variable holding test attempts, and what it does: a comma-separated list of
// socket | exec | fork | thread | write:PATH | read:PATH. For each, RunTestAttempts tries the
// action and returns one line per attempt, "airlock sandbox test: ACTION: ok" or ": errno=ENAME".
// Tests use it to prove the sandbox denies the action (rather than the command merely not doing
// it). It is harmless in production: it runs only after Apply() succeeded, attempts only what the
// sandbox forbids (or, for thread and writes to outputs, what the command may do anyway), writes a
// fixed marker string, and whoever can set airlock's environment can already run any code as its
// user.
inline constexpr const char* kTestAttemptVariable = "AIRLOCK_TEST_SANDBOX_ATTEMPT";
std::vector<std::string> RunTestAttempts(std::string_view spec);

}  // namespace airlock::sandbox
