// The policy file is read with a cap (4 MiB) before parsing, so a policy named as a pipe or an
// oversized file cannot fill memory; and the integer settings are range-checked into their ints.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

#include "policy/detectors.h"
#include "policy/policy.h"
#include "test_util.h"

namespace airlock::policy {
namespace {

using airlock::testing::TempDir;

TEST(PolicyFile, OversizedFileIsRefusedBeforeParsing) {
  TempDir dir("policy-file");
  const std::string path = (dir.path() / "huge.toml").string();
  {
    std::ofstream out(path, std::ios::binary);
    out << "[server]\nthreads = 4\n" << std::string((4u << 20) + 1, '#');
  }
  auto p = LoadPolicy(path);
  ASSERT_FALSE(p.has_value());
  EXPECT_NE(p.error().message().find("file too large"), std::string::npos) << p.error().message();
}

// A policy given as a FIFO (`-c <(generate-policy)`) is read like a file.
TEST(PolicyFile, ReadsAFifo) {
  TempDir dir("policy-file");
  const std::string fifo = (dir.path() / "policy.fifo").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    const int fd = ::open(fifo.c_str(), O_WRONLY);
    ASSERT_GE(fd, 0);
    const std::string text = "[server]\nthreads = 6\n";
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
    ::close(fd);
  });
  auto p = LoadPolicy(fifo);
  writer.join();
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->server.threads, 6);
}

TEST(PolicyFile, MissingFileIsNotFound) {
  TempDir dir("policy-file");
  auto p = LoadPolicy((dir.path() / "absent.toml").string());
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error().code(), StatusCode::kNotFound);
}

TEST(PolicyInts, ValuesInRangeAreReadAndDefaultsKept) {
  auto p = ParsePolicy(
      "[server]\nthreads = 8\nheader_timeout_s = 600\ndrain_timeout_s = 0\n"
      "[audit]\ncheckpoint_every = 7\n");
  ASSERT_TRUE(p.has_value()) << p.error().message();
  EXPECT_EQ(p->server.threads, 8);
  EXPECT_EQ(p->server.header_timeout_s, 600);
  EXPECT_EQ(p->server.drain_timeout_s, 0);
  EXPECT_EQ(p->audit.checkpoint_every, 7);
  EXPECT_EQ(p->server.read_timeout_s, ServerSettings{}.read_timeout_s);
}

TEST(PolicyInts, ValuesOutOfRangeOrNotIntegersAreRefused) {
  for (const char* text :
       {"[server]\nthreads = 1\n", "[server]\nthreads = 1025\n",
        "[server]\nkeep_alive_max_requests = 4294967297\n", "[server]\nrequest_timeout_s = 1.5\n",
        "[audit]\ncheckpoint_every = 0\n"}) {
    auto p = ParsePolicy(text);
    EXPECT_FALSE(p.has_value()) << text;
  }
}

// The IPv6 check validates on a stack copy: the longest address text (8 full groups) is still
// found, and a run of more groups is still refused.
TEST(DetectorsIpv6, LongestFormIsFoundAndLongerRunsAreNot) {
  auto set = DetectorSet::Create({});
  ASSERT_TRUE(set.ok()) << set.error().message();
  const std::string longest = "2001:0db8:0000:0000:0000:ff00:0042:8329";
  bool found = false;
  for (const Match& m : (*set)->Scan("host " + longest + " up"))
    found |= m.rule == "ipv6" && m.end - m.begin == longest.size();
  EXPECT_TRUE(found);
  for (const Match& m : (*set)->Scan("x 0000:0000:0000:0000:0000:0000:0000:0000:0000:0000 y"))
    EXPECT_NE(m.rule, "ipv6") << m.begin << "-" << m.end;
}

}  // namespace
}  // namespace airlock::policy
