// A hostile or broken upstream against the gateway's upstream client, end to end: a real
// `airlock serve` process (AIRLOCK_EXE) in front of upstreams in this test process on loopback.
// HeaderBombUpstream is a raw socket that answers every request with a header section that never
// ends; the honest upstream is a RecordingUpstream (gateway_support.h). No assertion depends on
// timing or on memory figures: the bound shows as the gateway closing the connection long before
// the hostile upstream ran out of header lines to send.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <zlib.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "gateway_support.h"

namespace {

using json = nlohmann::json;
using airlock::testing::RecordingUpstream;
using airlock::testing::ServeArgs;
using airlock::testing::ServeProcess;
using airlock::testing::TempDir;

// Answers each request with "HTTP/1.1 200 OK" and then `X-Pad: <4000 bytes>` lines without end,
// until the peer closes the connection or kMaxBytes were sent (the gateway did not stop it).
class HeaderBombUpstream {
 public:
  static constexpr std::size_t kMaxBytes = 256u << 20;

  HeaderBombUpstream() {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0)
      return;
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~HeaderBombUpstream() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }
  int port() const { return port_; }
  int connections() const { return connections_.load(); }
  // Connections the peer closed while the header section was still being sent.
  int cut_off() const { return cut_off_.load(); }
  std::size_t most_sent() const { return most_sent_.load(); }

 private:
  void Serve() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) != 1) continue;
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      connections_++;
      // A hang guard only (the test fails instead of hanging if the gateway stops reading).
      timeval guard{60, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &guard, sizeof guard);
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &guard, sizeof guard);
      std::string request;
      char buf[4096];
      while (request.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        request.append(buf, static_cast<std::size_t>(n));
      }
      std::string lines = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n";
      const std::string pad = "X-Pad: " + std::string(4000, 'a') + "\r\n";
      for (int i = 0; i < 64; ++i) lines += pad;
      std::size_t sent = 0;
      bool closed_by_peer = false;
      while (sent < kMaxBytes && !stop_) {
        ssize_t n = ::send(fd, lines.data(), lines.size(), MSG_NOSIGNAL);
        if (n < 0) {
          closed_by_peer = errno == EPIPE || errno == ECONNRESET;
          break;
        }
        sent += static_cast<std::size_t>(n);
      }
      if (closed_by_peer) cut_off_++;
      if (sent > most_sent_) most_sent_ = sent;
      ::close(fd);
    }
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> cut_off_{0};
  std::atomic<std::size_t> most_sent_{0};
  std::thread thread_;
};

json Answer(const std::string& content) {
  return {{"id", "up-1"},
          {"object", "chat.completion"},
          {"choices", json::array({{{"index", 0},
                                    {"message", {{"role", "assistant"}, {"content", content}}},
                                    {"finish_reason", "stop"}}})},
          {"usage", {{"prompt_tokens", 1}, {"completion_tokens", 1}}}};
}

std::string Chat(const std::string& model, bool stream = false) {
  json body = {{"model", model},
               {"messages", json::array({{{"role", "user"}, {"content", "hello"}}})}};
  if (stream) body["stream"] = true;
  return body.dump();
}

std::string ErrorCode(const httplib::Result& r) {
  json j = json::parse(r->body, nullptr, false);
  return j.is_object() && j.contains("error") && j["error"].is_object()
             ? j["error"].value("code", "")
             : "";
}

std::string Gzip(const std::string& text) {
  z_stream z{};
  deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  std::string out(deflateBound(&z, text.size()) + 32, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

class HostileUpstreamTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { signal(SIGPIPE, SIG_IGN); }

  // Model "bomb" goes to the header bomb, "honest" to an upstream answering `honest_answer_`.
  void Start() {
    std::ofstream(dir_.path() / "gw.toml")
        << "[[upstreams]]\nname='bomb'\nbase_url='http://127.0.0.1:" << bomb_.port()
        << "/v1'\njurisdiction='US'\nmodels=['bomb']\ntimeout_s=120\n"
        << "[[upstreams]]\nname='honest'\nbase_url='http://127.0.0.1:" << honest_.port()
        << "/v1'\njurisdiction='US'\nmodels=['honest']\n"
        << "[audit]\npath='" << (dir_.path() / "a.db").string() << "'\n[server]\nkeys_db='"
        << (dir_.path() / "k.db").string() << "'\n";
    gw_ = std::make_unique<ServeProcess>(
        ServeArgs((dir_.path() / "gw.toml").string()),
        airlock::testing::ServeProcessOptions{.stop_signal = SIGTERM});
    ASSERT_GT(gw_->port(), 0) << gw_->first_line();
  }
  httplib::Result Post(const std::string& body) {
    httplib::Client c("127.0.0.1", gw_->port());
    c.set_read_timeout(180, 0);
    return c.Post("/v1/chat/completions", body, "application/json");
  }

  TempDir dir_{"upstream-hostile"};
  HeaderBombUpstream bomb_;
  std::function<void(const httplib::Request&, httplib::Response&)> honest_answer_ =
      [](const httplib::Request&, httplib::Response& res) {
        res.set_content(Answer("all good").dump(), "application/json");
      };
  RecordingUpstream honest_{
      [this](const httplib::Request& q, httplib::Response& r) { honest_answer_(q, r); }};
  std::unique_ptr<ServeProcess> gw_;
};

// Attack (F6): an upstream that answers with an endless header section made the gateway buffer
// it without bound (cpp-httplib limited each header line, not their number). The gateway now
// refuses the answer once the section passes its limit (502 upstream_error), closes the
// connection, and keeps serving.
TEST_F(HostileUpstreamTest, EndlessResponseHeaderSectionIsRefusedAndGatewayKeepsServing) {
  ASSERT_GT(bomb_.port(), 0);
  Start();
  for (bool stream : {false, true}) {
    auto r = Post(Chat("bomb", stream));
    ASSERT_TRUE(r) << "the gateway did not answer (stream=" << stream << ")";
    EXPECT_EQ(r->status, 502) << r->body;
    EXPECT_EQ(ErrorCode(r), "upstream_error") << r->body;
    EXPECT_NE(r->body.find("header section"), std::string::npos) << r->body;
  }
  // Each hostile connection was closed by the gateway while the upstream was still sending, far
  // from the bytes it was ready to send.
  auto closed_by_gateway = [&] {
    for (int i = 0; i < 600 && bomb_.cut_off() < 2; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return bomb_.cut_off();
  };
  EXPECT_EQ(closed_by_gateway(), 2);
  EXPECT_LT(bomb_.most_sent(), HeaderBombUpstream::kMaxBytes);
  auto ok = Post(Chat("honest"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

// A header section near the limit (many headers, as some providers send) is still accepted.
TEST_F(HostileUpstreamTest, LargeButBoundedHeaderSectionIsAccepted) {
  honest_answer_ = [](const httplib::Request&, httplib::Response& res) {
    for (int i = 0; i < 10; ++i)
      res.set_header("X-Trace-" + std::to_string(i), std::string(4000, 'b'));
    res.set_content(Answer("many headers").dump(), "application/json");
  };
  Start();
  auto r = Post(Chat("honest"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], "many headers");
}

// An upstream answering with Content-Encoding: gzip is decoded (as the earlier client did), and
// the decoded answer goes through the response policy like any other.
TEST_F(HostileUpstreamTest, GzipEncodedAnswerIsDecoded) {
  honest_answer_ = [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Encoding", "gzip");
    res.set_content(Gzip(Answer("compressed hello").dump()), "application/json");
  };
  Start();
  auto r = Post(Chat("honest"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(json::parse(r->body)["choices"][0]["message"]["content"], "compressed hello");
}

// Attack: a gzip bomb as the answer (a small body that expands past the gateway's 32 MiB limit
// for an upstream answer) is refused as too large, not inflated whole.
TEST_F(HostileUpstreamTest, GzipBombAnswerIsRefusedAsTooLarge) {
  const std::string bomb = Gzip("{\"x\":\"" + std::string(64u << 20, 'a') + "\"}");
  honest_answer_ = [&bomb](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Encoding", "gzip");
    res.set_content(bomb, "application/json");
  };
  Start();
  auto r = Post(Chat("honest"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_NE(r->body.find("too large"), std::string::npos) << r->body;
}

// A content coding the gateway does not know is refused (fail closed), not passed on as text.
TEST_F(HostileUpstreamTest, UnknownContentEncodingIsRefused) {
  honest_answer_ = [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Content-Encoding", "zstd");
    res.set_content(Answer("not really zstd").dump(), "application/json");
  };
  Start();
  auto r = Post(Chat("honest"));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 502) << r->body;
  EXPECT_EQ(ErrorCode(r), "upstream_error");
}

}  // namespace
