// Helpers shared by the test binaries: where the third-party fixtures are, temp folders, reading a
// file, a free loopback port, and running the airlock executable.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <string>
#include <utility>

#include "shell_util.h"

namespace airlock::testing {

// ../shared/fixtures beside the checkout, or $AIRLOCK_FIXTURES. nullopt when absent.
inline std::optional<std::filesystem::path> FixturesDir() {
  if (const char* env = std::getenv("AIRLOCK_FIXTURES")) {
    if (std::filesystem::is_directory(env)) return std::filesystem::path(env);
    return std::nullopt;
  }
  std::filesystem::path p =
      std::filesystem::path(AIRLOCK_SOURCE_DIR) / ".." / "shared" / "fixtures";
  if (std::filesystem::is_directory(p)) return std::filesystem::canonical(p);
  return std::nullopt;
}

// A fresh empty folder under the build tree, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag = "t") {
    path_ = std::filesystem::path(AIRLOCK_BINARY_DIR) / "test-tmp" /
            (tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// The bytes of the file at `p` ("" when it cannot be read).
inline std::string ReadFileText(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A loopback TCP port that was free a moment ago and has no listener now: for a server the test
// starts on it, or for a peer that must refuse connections.
inline int UnusedLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// `airlock ARGS` (the executable under test, AIRLOCK_EXE), as RunShell.
inline std::pair<int, std::string> RunAirlock(const std::string& args) {
  return RunShell(std::string(AIRLOCK_EXE) + " " + args);
}

}  // namespace airlock::testing

// Skips the current test (with a clear message) when ../shared/fixtures/<sub> is absent; else
// declares `fixtures` (a std::filesystem::path to that folder).
#define AIRLOCK_FIXTURES_OR_SKIP(fixtures, sub)                                     \
  auto fixtures##_root = ::airlock::testing::FixturesDir();                         \
  if (!fixtures##_root || !std::filesystem::is_directory(*fixtures##_root / (sub))) \
    GTEST_SKIP() << "third-party fixtures not found (../shared/fixtures/" << (sub)  \
                 << "); set AIRLOCK_FIXTURES to run this test";                     \
  const std::filesystem::path fixtures = *fixtures##_root / (sub)
