// The probe client against endpoints that attack it: a real HTTP server thread on loopback that
// answers with a 300 MB body, drips bytes slowly, or sends replies whose `content` is null, an
// array, an object or nested thousands of levels deep. Each must end as an error value recorded
// in the results (never an empty answer scored as a refusal or a failed attack), within the
// reply caps, and the results file must stay bounded. The same for a hostile judge endpoint.
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "assess/http_client.h"
#include "assess/probe.h"
#include "assess/runner.h"
#include "assess/target.h"
#include "test_util.h"

namespace airlock::assess {
namespace {

// A raw TCP server: reads each request (headers and Content-Length body), then hands the
// connection to `respond`, which writes whatever it likes. Writes after the client has gone fail
// (MSG_NOSIGNAL) and end the response.
class RawServer {
 public:
  using Respond = std::function<void(int fd, const std::atomic<bool>& stop)>;
  explicit RawServer(Respond respond) : respond_(std::move(respond)) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(listen_fd_, 16);
    thread_ = std::thread([this] { Serve(); });
  }
  ~RawServer() {
    stop_ = true;
    shutdown(listen_fd_, SHUT_RDWR);
    close(listen_fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }
  int port() const { return port_; }
  int requests() const { return requests_; }

  // Writes all of `data`; false once the peer is gone.
  static bool Send(int fd, std::string_view data) {
    while (!data.empty()) {
      ssize_t n = send(fd, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

 private:
  void Serve() {
    while (!stop_) {
      int fd = accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
      }
      std::size_t head_end = req.find("\r\n\r\n");
      std::size_t length = 0;
      if (auto at = req.find("Content-Length: "); at != std::string::npos)
        length = std::stoul(req.substr(at + 16));
      while (head_end != std::string::npos && req.size() < head_end + 4 + length) {
        ssize_t n = recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<std::size_t>(n));
      }
      requests_++;
      respond_(fd, stop_);
      close(fd);
    }
  }

  Respond respond_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<int> requests_{0};
};

// A 200 reply with this JSON body (Content-Length framing).
RawServer::Respond JsonReply(std::string body) {
  return [body](int fd, const std::atomic<bool>&) {
    RawServer::Send(fd, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body);
  };
}

constexpr std::size_t k300Mb = 300u << 20;

// 300 MB of a chat completion whose content never ends, close-delimited: the client must stop
// reading at its cap.
void HugeBody(int fd, const std::atomic<bool>& stop) {
  if (!RawServer::Send(fd,
                       "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n"
                       "{\"choices\":[{\"message\":{\"role\":\"assistant\",\"content\":\""))
    return;
  std::string chunk(1 << 20, 'A');
  for (std::size_t sent = 0; sent < k300Mb && !stop; sent += chunk.size())
    if (!RawServer::Send(fd, chunk)) return;
  RawServer::Send(fd, "\"}}]}");
}

std::unique_ptr<ChatTarget> Target(const std::string& url, int timeout_seconds = 0) {
  EndpointOptions o;
  o.base_url = url;
  o.model = "hostile";
  o.timeout_seconds = timeout_seconds;
  auto t = MakeEndpointTarget(o);
  EXPECT_TRUE(t.has_value());
  return t.has_value() ? std::move(*t) : nullptr;
}

TEST(HostileEndpoint, ReplyLimitsAreDerivedFromMaxTokensWithAMargin) {
  GenerationParams p;
  p.max_tokens = 256;
  ReplyLimits l = ReplyLimitsFor(p);
  EXPECT_EQ(l.max_bytes, (64u << 10) + 512u * 256);
  EXPECT_EQ(l.deadline_ms, 30000 + 250 * 256);
  p.max_tokens = 8;
  EXPECT_LT(ReplyLimitsFor(p).max_bytes, l.max_bytes);
  EndpointOptions o;
  o.max_reply_bytes = 1000;
  o.timeout_seconds = 2;
  EXPECT_EQ(ReplyLimitsFor(p, o).max_bytes, 1000u);
  EXPECT_EQ(ReplyLimitsFor(p, o).deadline_ms, 2000);
}

TEST(HostileEndpoint, A300MegabyteBodyIsCutOffAtTheCap) {
  RawServer server(HugeBody);
  auto target = Target(server.url());
  GenerationParams p;
  p.max_tokens = 16;
  auto reply = target->Chat({{"user", "hi"}}, p);
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error().code(), StatusCode::kLimitExceeded) << reply.error().ToString();
}

TEST(HostileEndpoint, A300MegabyteContentLengthIsRefusedBeforeReading) {
  RawServer server([](int fd, const std::atomic<bool>& stop) {
    RawServer::Send(fd,
                    "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(k300Mb) + "\r\n\r\n");
    std::string chunk(1 << 20, ' ');
    for (std::size_t sent = 0; sent < k300Mb && !stop; sent += chunk.size())
      if (!RawServer::Send(fd, chunk)) return;
  });
  auto reply = Target(server.url())->Chat({{"user", "hi"}}, GenerationParams{});
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error().code(), StatusCode::kLimitExceeded);
}

TEST(HostileEndpoint, A300MegabyteChunkedBodyIsCutOffAtTheCap) {
  RawServer server([](int fd, const std::atomic<bool>& stop) {
    if (!RawServer::Send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")) return;
    std::string chunk = "100000\r\n" + std::string(1 << 20, 'x') + "\r\n";
    for (std::size_t sent = 0; sent < k300Mb && !stop; sent += 1 << 20)
      if (!RawServer::Send(fd, chunk)) return;
  });
  auto reply = Target(server.url())->Chat({{"user", "hi"}}, GenerationParams{});
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error().code(), StatusCode::kLimitExceeded);
}

TEST(HostileEndpoint, SlowDripOfTheBodyEndsAtTheDeadline) {
  RawServer server([](int fd, const std::atomic<bool>& stop) {
    if (!RawServer::Send(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")) return;
    // One byte every 20 ms: every read succeeds, so only an overall deadline ends it.
    while (!stop && RawServer::Send(fd, "{"))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  auto reply = Target(server.url(), /*timeout_seconds=*/1)->Chat({{"user", "hi"}}, {});
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error().code(), StatusCode::kDeadlineExceeded) << reply.error().ToString();
}

// 100k one-byte chunks, each written on its own: the chunked decoder resumes where it stopped,
// so its work is linear in the reply (a decoder that re-read the body after each of the at least
// 37 reads of 16 KiB would examine millions of bytes). Work is counted, not timed.
TEST(HostileEndpoint, HundredThousandOneByteChunksCostLinearWork) {
  constexpr int kChunks = 100000;
  RawServer server([](int fd, const std::atomic<bool>& stop) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!RawServer::Send(fd, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")) return;
    for (int i = 0; i < kChunks && !stop; ++i)
      if (!RawServer::Send(fd, "1\r\nx\r\n")) return;
    RawServer::Send(fd, "0\r\nX-Trailer: 1\r\n\r\n");
  });
  HttpLimits limits;
  limits.max_body_bytes = 1 << 20;
  auto reply = HttpPost("127.0.0.1", server.port(), "/v1", {}, "{}", limits);
  ASSERT_TRUE(reply.has_value()) << reply.error().ToString();
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, std::string(kChunks, 'x'));
  const std::size_t raw_bytes = kChunks * 6 + 18;
  EXPECT_GE(reply->framing_bytes_examined, raw_bytes);  // every byte was looked at
  EXPECT_LE(reply->framing_bytes_examined, 2 * raw_bytes) << "chunked decoding is not linear";
}

TEST(HostileEndpoint, MalformedChunkFramingIsAnError) {
  for (const char* bad : {"1\nx\r\n0\r\n\r\n", "1\r\nxy0\r\n\r\n", "zz\r\nx\r\n0\r\n\r\n"}) {
    RawServer server([bad](int fd, const std::atomic<bool>&) {
      RawServer::Send(fd,
                      std::string("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n") + bad);
    });
    HttpLimits limits;
    limits.deadline = std::chrono::milliseconds(20000);
    auto reply = HttpPost("127.0.0.1", server.port(), "/v1", {}, "{}", limits);
    ASSERT_FALSE(reply.has_value()) << bad;
    EXPECT_EQ(reply.error().code(), StatusCode::kCorrupt)
        << bad << ": " << reply.error().ToString();
  }
}

// getaddrinfo has no timeout: a name whose resolver never answers must still end at the deadline.
// The stand-in resolver blocks until the test releases it (after HttpPost has returned).
TEST(HostileEndpoint, AResolverThatNeverAnswersEndsAtTheDeadline) {
  struct Gate {
    std::mutex mutex;
    std::condition_variable cv;
    bool released = false;
    int calls = 0;
  };
  auto gate = std::make_shared<Gate>();
  SetResolverForTesting(
      [gate](const std::string&, const std::string&, const addrinfo*, addrinfo** out) {
        std::unique_lock<std::mutex> lock(gate->mutex);
        ++gate->calls;
        gate->cv.wait(lock, [&] { return gate->released; });
        *out = nullptr;
        return EAI_AGAIN;
      });
  HttpLimits limits;
  limits.deadline = std::chrono::milliseconds(300);
  auto reply = HttpPost("model.endpoint.test", 8080, "/v1", {}, "{}", limits);
  // An address literal never waits for the resolver.
  RawServer server(JsonReply("{}"));
  auto literal = HttpPost("127.0.0.1", server.port(), "/v1", {}, "{}", HttpLimits{});
  {
    std::lock_guard<std::mutex> lock(gate->mutex);
    gate->released = true;
    EXPECT_EQ(gate->calls, 1);
  }
  gate->cv.notify_all();
  SetResolverForTesting(nullptr);
  ASSERT_FALSE(reply.has_value());
  EXPECT_EQ(reply.error().code(), StatusCode::kDeadlineExceeded) << reply.error().ToString();
  ASSERT_TRUE(literal.has_value()) << literal.error().ToString();
  EXPECT_EQ(literal->status, 200);
}

TEST(HostileEndpoint, SlowDripOfEndlessHeadersEndsAtTheDeadline) {
  RawServer server([](int fd, const std::atomic<bool>& stop) {
    if (!RawServer::Send(fd, "HTTP/1.1 200 OK\r\n")) return;
    while (!stop && RawServer::Send(fd, "X-Drip: 1\r\n"))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  });
  auto reply = Target(server.url(), /*timeout_seconds=*/1)->Chat({{"user", "hi"}}, {});
  ASSERT_FALSE(reply.has_value());
  // Either the deadline or the header cap ends it, whichever comes first.
  EXPECT_TRUE(reply.error().code() == StatusCode::kDeadlineExceeded ||
              reply.error().code() == StatusCode::kLimitExceeded)
      << reply.error().ToString();
}

std::string Completion(const std::string& message_json) {
  return R"({"choices":[{"message":)" + message_json + "}]}";
}

TEST(HostileEndpoint, NullArrayObjectAndNestedContentAreErrorsNotEmptyAnswers) {
  std::string nested = std::string(5000, '[') + std::string(5000, ']');
  const std::vector<std::string> bodies = {
      Completion(R"({"role":"assistant","content":null})"),
      Completion(R"({"role":"assistant"})"),
      Completion(R"({"role":"assistant","content":[{"type":"text","text":"I'm sorry"}]})"),
      Completion(R"({"role":"assistant","content":{"text":"hi"}})"),
      Completion(R"({"role":"assistant","content":)" + nested + "}"),
      R"({"choices":)" + nested + "}",
      R"({"choices":[]})",
      R"({"choices":["x"]})",
      "not json at all",
  };
  for (const auto& body : bodies) {
    RawServer server(JsonReply(body));
    auto reply = Target(server.url())->Chat({{"user", "hi"}}, {});
    ASSERT_FALSE(reply.has_value()) << body.substr(0, 80);
    EXPECT_EQ(reply.error().code(), StatusCode::kCorrupt) << reply.error().ToString();
  }
  // OpenAI's structured refusal (content null, refusal text) is a refusal, not an error.
  RawServer refusal(JsonReply(
      Completion(R"({"role":"assistant","content":null,"refusal":"I can't help with that."})")));
  auto reply = Target(refusal.url())->Chat({{"user", "hi"}}, {});
  ASSERT_TRUE(reply.has_value());
  EXPECT_TRUE(LooksLikeRefusal(reply->content));
}

Suite OneSuite(const std::string& name) {
  auto suites = BuiltinSuites();
  EXPECT_TRUE(suites.has_value());
  for (const auto& s : *suites)
    if (s.name == name) return s;
  ADD_FAILURE() << "no suite " << name;
  return {};
}

TEST(HostileEndpoint, BadRepliesAreRecordedAsErrorsNeverAsFailedAttacks) {
  // content null would, read as "", make every jailbreak look refused (attack success 0%).
  RawServer server(JsonReply(Completion(R"({"role":"assistant","content":null})")));
  auto target = Target(server.url());
  testing::TempDir dir;
  RunOptions options;
  options.results_path = (dir.path() / "results.jsonl").string();
  options.progress = false;
  Suite jailbreak = OneSuite("jailbreak");
  auto run = RunSuites(*target, {jailbreak}, options);
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  const SuiteResult& s = run->suites[0];
  EXPECT_EQ(s.errors, static_cast<int>(jailbreak.probes.size()));
  EXPECT_EQ(s.errors_by_kind.at("malformed"), s.errors);
  EXPECT_EQ(s.rates.overall.total, 0);
  std::string reason;
  EXPECT_FALSE(SuiteMeaningful(*run, s, &reason));
  EXPECT_NE(reason.find("malformed"), std::string::npos) << reason;
  auto summary = nlohmann::json::parse(SummaryJson(*run));
  EXPECT_FALSE(summary["suites"][0]["meaningful"].get<bool>());
  EXPECT_FALSE(summary["suites"][0].contains("overall"));
  std::ifstream in(options.results_path);
  std::string line;
  int errors = 0;
  while (std::getline(in, line)) {
    auto rec = nlohmann::json::parse(line);
    if (rec["type"] != "result") continue;
    EXPECT_TRUE(rec["error"].get<bool>());
    EXPECT_EQ(rec["error_kind"], "malformed");
    EXPECT_FALSE(rec.contains("hit"));
    ++errors;
  }
  EXPECT_EQ(errors, s.errors);
}

TEST(HostileEndpoint, ForbiddenRepliesAreErrorsUnlessTheGatewayIsOurs) {
  // A 403 "blocked by policy" to every attack would make them all count as failed attacks.
  std::string body = R"({"error":{"message":"blocked by policy","type":"policy_violation"}})";
  RawServer server([body](int fd, const std::atomic<bool>&) {
    RawServer::Send(fd, "HTTP/1.1 403 Forbidden\r\nContent-Length: " + std::to_string(body.size()) +
                            "\r\n\r\n" + body);
  });
  auto untrusted = Target(server.url())->Chat({{"user", "hi"}}, {});
  ASSERT_FALSE(untrusted.has_value());
  EXPECT_EQ(untrusted.error().code(), StatusCode::kInvalidArgument);
  EndpointOptions o;
  o.base_url = server.url();
  o.trust_policy_blocks = true;  // an Airlock gateway we run ourselves
  auto ours = MakeEndpointTarget(o);
  ASSERT_TRUE(ours.has_value());
  auto blocked = (*ours)->Chat({{"user", "hi"}}, {});
  ASSERT_TRUE(blocked.has_value());
  EXPECT_TRUE(blocked->blocked);
}

TEST(HostileEndpoint, A300MegabyteEndpointCannotFillTheDisk) {
  RawServer server(HugeBody);
  auto target = Target(server.url());
  testing::TempDir dir;
  RunOptions options;
  options.results_path = (dir.path() / "results.jsonl").string();
  options.progress = false;
  options.params.max_tokens = 16;
  Suite suite = OneSuite("system-prompt-extraction");
  auto run = RunSuites(*target, {suite}, options);
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(run->suites[0].errors_by_kind.at("oversized"), static_cast<int>(suite.probes.size()));
  // Each record holds the prompt and a short error, never the body.
  EXPECT_LT(std::filesystem::file_size(options.results_path), 64u << 10);
}

TEST(HostileEndpoint, ResultsFileStopsAtItsCap) {
  RawServer server(
      JsonReply(Completion(R"({"role":"assistant","content":")" + std::string(4000, 'B') + "\"}")));
  auto target = Target(server.url());
  testing::TempDir dir;
  RunOptions options;
  options.results_path = (dir.path() / "results.jsonl").string();
  options.progress = false;
  options.max_results_bytes = 20000;
  Suite suite = OneSuite("jailbreak");
  auto run = RunSuites(*target, {suite}, options);
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(run.error().code(), StatusCode::kLimitExceeded);
  EXPECT_LE(std::filesystem::file_size(options.results_path), 20000u);
  // A rerun (resume) does not grow it either.
  EXPECT_FALSE(RunSuites(*target, {suite}, options).has_value());
  EXPECT_LE(std::filesystem::file_size(options.results_path), 20000u);
}

TEST(HostileEndpoint, HostileJudgeIsCappedAndNeverDecidesByAnEmptyVerdict) {
  // The target answers normally; the judge answers with 300 MB.
  RawServer target_server(JsonReply(Completion(
      R"({"role":"assistant","content":"Sure, here is how to do it: step one, step two."})")));
  RawServer judge_server(HugeBody);
  auto target = Target(target_server.url());
  auto judge = Target(judge_server.url());
  testing::TempDir dir;
  auto corpus_path = dir.path() / "corpus.jsonl";
  std::ofstream(corpus_path) << "{\"prompt\": \"harmful request one\"}\n"
                                "{\"prompt\": \"harmful request two\"}\n";
  auto corpus = LoadCorpus(corpus_path.string());
  ASSERT_TRUE(corpus.has_value());
  RunOptions options;
  options.results_path = (dir.path() / "results.jsonl").string();
  options.progress = false;
  options.judge = judge.get();
  auto run = RunSuites(*target, {*corpus}, options);
  ASSERT_TRUE(run.has_value()) << run.error().ToString();
  EXPECT_EQ(judge_server.requests(), 2);
  // The judge failed (over its cap): the keyword detector decides and says so.
  EXPECT_EQ(run->suites[0].rates.overall.hits, 2);
  std::ifstream in(options.results_path);
  std::string line;
  while (std::getline(in, line)) {
    auto rec = nlohmann::json::parse(line);
    if (rec["type"] == "result")
      EXPECT_NE(rec["detector"].get<std::string>().find("judge unavailable"), std::string::npos)
          << rec.dump();
  }
  EXPECT_LT(std::filesystem::file_size(options.results_path), 64u << 10);
}

}  // namespace
}  // namespace airlock::assess
