// Quote, RunShell and RunShellStdout for test binaries and benchmarks alike (no GoogleTest here, so
// bench/ can use it).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <utility>

namespace airlock::testing {

// `s` quoted for /bin/sh (single quotes; a quote inside becomes '\'').
inline std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

// Runs `command` with /bin/sh; returns its exit status (-1 when it did not exit normally) and
// what it wrote to stdout. Its stderr is the caller's unless `command` redirects it.
inline std::pair<int, std::string> RunShellStdout(const std::string& command) {
  std::FILE* p = ::popen(command.c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

// As RunShellStdout, with what `command` wrote to stdout and stderr together.
inline std::pair<int, std::string> RunShell(const std::string& command) {
  return RunShellStdout(command + " 2>&1");
}

}  // namespace airlock::testing
