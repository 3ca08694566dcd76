// Hostile-endpoint fuzz target for `airlock assess`: every input is the raw bytes a malicious
// endpoint answers with. One loopback listening socket is opened once; for each input a server
// thread accepts one connection, writes the bytes (in two writes, split at a point the input
// picks), shuts down its side and drains the request. Input layout:
//   byte 0: mode: bit 0 clear: assess::HttpPost directly; set: an endpoint ChatTarget's Chat
//           (HttpPost + reply parsing: status, error JSON, choices/content/refusal/usage);
//           bit 1: trust_policy_blocks (403 handling)
//   bytes 1-2: split point (little endian, taken modulo the response size)
//   the rest: the response bytes.
// Small limits (4 KiB headers, 16 KiB body, 2 s deadline): HttpPost and Chat must return a value
// or an error, never crash, hang or hold more than their caps.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <thread>

#include "assess/http_client.h"
#include "assess/target.h"

namespace {

constexpr std::size_t kMaxBody = 16 << 10;
constexpr std::size_t kMaxHeader = 4 << 10;

int ListenOnce(int* port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) std::abort();
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(fd, 16) != 0) std::abort();
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  *port = ntohs(a.sin_port);
  return fd;
}

void WriteAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the client gave up (a cap or a framing error): fine
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Answers one connection with `response` split at `split`, then reads until the client closes
// (bounded), so that closing never resets a connection whose request is still unread.
void ServeOne(int listen_fd, std::string_view response, std::size_t split) {
  int fd = accept(listen_fd, nullptr, nullptr);
  if (fd < 0) return;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  WriteAll(fd, response.substr(0, split));
  WriteAll(fd, response.substr(split));
  shutdown(fd, SHUT_WR);
  char buf[4096];
  for (int i = 0; i < 64; ++i) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 3000) <= 0) break;
    if (recv(fd, buf, sizeof buf, 0) <= 0) break;
  }
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static int port = 0;
  static int listen_fd = ListenOnce(&port);
  if (size < 3) return 0;
  const std::uint8_t mode = data[0];
  const std::size_t split_at = data[1] | (static_cast<std::size_t>(data[2]) << 8);
  std::string_view response(reinterpret_cast<const char*>(data + 3), size - 3);
  const std::size_t split = response.empty() ? 0 : split_at % (response.size() + 1);

  std::thread server(ServeOne, listen_fd, response, split);
  if ((mode & 1) == 0) {
    airlock::assess::HttpLimits limits;
    limits.max_body_bytes = kMaxBody;
    limits.max_header_bytes = kMaxHeader;
    limits.deadline = std::chrono::milliseconds(2000);
    limits.connect_timeout = std::chrono::milliseconds(2000);
    auto res = airlock::assess::HttpPost("127.0.0.1", port, "/v1/chat/completions",
                                         {{"Content-Type", "application/json"}}, "{}", limits);
    if (res.has_value() && res->body.size() > kMaxBody) std::abort();  // the cap was not kept
  } else {
    airlock::assess::EndpointOptions options;
    options.base_url = "http://127.0.0.1:" + std::to_string(port) + "/v1";
    options.model = "fuzz";
    options.timeout_seconds = 2;
    options.max_reply_bytes = kMaxBody;
    options.trust_policy_blocks = (mode & 2) != 0;
    auto target = airlock::assess::MakeEndpointTarget(options);
    if (!target.has_value()) std::abort();
    auto reply = (*target)->Chat({{"user", "hello"}}, airlock::assess::GenerationParams{});
    if (reply.has_value() && reply->content.size() > kMaxBody) std::abort();
  }
  server.join();
  return 0;
}
