// Opens an assessment report in headless Chromium: it must render (screenshot), log nothing to
// the console (the page has no scripts, and its Content-Security-Policy would log any blocked
// load), and make no network request (every request is sent to a recording proxy on loopback).
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <thread>

#include "assess/report.h"
#include "core/file.h"
#include "test_util.h"

namespace airlock::assess {
namespace {

// Accepts connections on 127.0.0.1 and records the first line of each request.
class RecordingProxy {
 public:
  RecordingProxy() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    ::listen(fd_, 16);
    thread_ = std::thread([this] {
      while (!stop_) {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, 100) <= 0) continue;
        int c = ::accept(fd_, nullptr, nullptr);
        if (c < 0) continue;
        char buf[512];
        pollfd q{c, POLLIN, 0};
        ssize_t n = ::poll(&q, 1, 1000) > 0 ? ::recv(c, buf, sizeof buf - 1, 0) : 0;
        std::string line(buf, n > 0 ? static_cast<std::size_t>(n) : 0);
        line = line.substr(0, line.find('\r'));
        {
          std::lock_guard lock(mu_);
          requests_.push_back(line);
        }
        ::close(c);
      }
    });
  }
  ~RecordingProxy() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  int port() const { return port_; }
  // Requests other than Chromium's own background traffic to Google update/time services.
  std::vector<std::string> PageRequests() {
    std::lock_guard lock(mu_);
    std::vector<std::string> out;
    for (const auto& r : requests_) {
      bool browser = r.find("google.com") != std::string::npos ||
                     r.find("googleapis.com") != std::string::npos ||
                     r.find("gvt1.com") != std::string::npos;
      if (!browser) out.push_back(r);
    }
    return out;
  }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

std::string FindChromium() {
  for (const char* p : {"/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"})
    if (std::filesystem::exists(p)) return p;
  return "";
}

Report SampleReport() {
  Report r;
  r.airlock_version = "test";
  r.created_at = "2026-11-29T00:00:00Z";
  ModelAssessment m;
  m.model_name = "model-a.gguf";
  m.model_path = "/models/model-a.gguf";
  m.model_sha256 = std::string(64, 'a');
  m.model_bytes = 1234;
  scan::ScanReport s;
  s.files.push_back(
      {.path = "/models/model-a.gguf", .format = "gguf", .verdict = scan::Verdict::kClean});
  m.scan = s;
  m.inspect_json = R"({"architecture": "qwen2", "parameters": 494032768})";
  RunSummary run;
  run.target = "endpoint http://127.0.0.1:1/v1";
  SuiteResult sr;
  sr.name = "prompt-injection";
  sr.intent = "<b>escaped?</b> injection";
  sr.sha256 = std::string(64, 'b');
  sr.rates.overall = WilsonRate(7, 14);
  sr.rates.by_category["direct"] = WilsonRate(5, 8);
  sr.rates.by_lang["en"] = WilsonRate(4, 9);
  sr.rates.by_lang["zh"] = WilsonRate(3, 5);
  run.suites.push_back(sr);
  m.probes = run;
  r.models.push_back(m);
  ModelAssessment b = m;
  b.model_name = "model-b.gguf";
  b.probes->suites[0].rates.overall = WilsonRate(1, 14);
  r.models.push_back(b);
  r.detector_accuracy.push_back(
      {.detector = "refusal", .precision = 0.9, .recall = 1, .accuracy = 0.95});
  return r;
}

TEST(ReportTest, HtmlEscapesAndIsSelfContained) {
  std::string html = RenderHtml(SampleReport());
  EXPECT_NE(html.find("&lt;b&gt;escaped?&lt;/b&gt;"), std::string::npos);
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
  EXPECT_EQ(html.find("href=\"http"), std::string::npos);
  EXPECT_NE(html.find("<svg"), std::string::npos);
  EXPECT_NE(html.find("50.0%"), std::string::npos);  // 7/14
}

TEST(ReportTest, OpensInHeadlessChromiumWithoutErrorsOrNetwork) {
  std::string chromium = FindChromium();
  if (chromium.empty()) GTEST_SKIP() << "chromium not installed (scripts/setup.sh installs it)";
  testing::TempDir dir;
  auto html = dir.path() / "report.html";
  ASSERT_TRUE(core::WriteFileAtomic(html.string(), RenderHtml(SampleReport())).ok());
  auto shot = dir.path() / "report.png";
  RecordingProxy proxy;
  std::string cmd = "timeout 90 " + chromium +
                    " --headless --no-sandbox --disable-gpu --no-first-run"
                    " --disable-background-networking --disable-component-update --disable-sync"
                    " --user-data-dir=" +
                    (dir.path() / "profile").string() +
                    " --proxy-server=http://127.0.0.1:" + std::to_string(proxy.port()) +
                    " --enable-logging=stderr --v=0 --window-size=1100,1600"
                    " --screenshot=" +
                    shot.string() + " file://" + html.string();
  auto [status, log] = airlock::testing::RunShell(cmd);
  ASSERT_EQ(status, 0) << log;
  ASSERT_TRUE(std::filesystem::exists(shot)) << log;
  EXPECT_GT(std::filesystem::file_size(shot), 10'000u);
  std::size_t console = log.find(":CONSOLE");
  EXPECT_EQ(console, std::string::npos)
      << log.substr(console == std::string::npos ? 0 : console, 400);
  EXPECT_TRUE(proxy.PageRequests().empty()) << proxy.PageRequests().front();
}

}  // namespace
}  // namespace airlock::assess
