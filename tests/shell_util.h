// RunShell for test binaries and benchmarks alike (no GoogleTest here, so bench/ can use it).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>
#include <utility>

namespace airlock::testing {

// Runs `command` with /bin/sh; returns its exit status (-1 when it did not exit normally) and
// what it wrote to stdout and stderr together.
inline std::pair<int, std::string> RunShell(const std::string& command) {
  std::FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  if (p == nullptr) return {-1, ""};
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace airlock::testing
