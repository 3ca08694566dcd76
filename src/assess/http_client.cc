#include "assess/http_client.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <system_error>
#include <thread>

#include "core/text.h"

namespace airlock::assess {
namespace {

using Clock = std::chrono::steady_clock;

Status DeadlineExceeded(std::string m) { return {StatusCode::kDeadlineExceeded, std::move(m)}; }

class Socket {
 public:
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;
  int fd() const { return fd_; }

 private:
  int fd_;
};

int MillisLeft(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::int64_t>(0, left.count()));
}

// Waits for `events` on fd until the deadline. false: the deadline ran out.
bool WaitFor(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int left = MillisLeft(deadline);
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, left);
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return true;  // let the following call report the error
  }
}

int SystemResolver(const std::string& host, const std::string& service, const addrinfo* hints,
                   addrinfo** out) {
  return getaddrinfo(host.c_str(), service.c_str(), hints, out);
}

std::mutex resolver_mutex;
Resolver& CurrentResolver() {
  static Resolver resolver = SystemResolver;
  return resolver;
}

// One name resolution, shared by the caller and the helper thread that runs it: whoever lets go
// last frees the result.
struct Resolution {
  std::mutex mutex;
  std::condition_variable done_cv;
  bool done = false;
  int rc = 0;
  addrinfo* result = nullptr;
  ~Resolution() {
    if (result) freeaddrinfo(result);
  }
};

// Resolves host:service within the deadline. An address literal resolves here at once; a name
// goes to the resolver on a helper thread (getaddrinfo has no timeout of its own), and when the
// deadline comes first the caller stops waiting and the thread finishes and cleans up alone.
Result<std::shared_ptr<Resolution>> Resolve(const std::string& host, const std::string& service,
                                            Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  auto literal = std::make_shared<Resolution>();
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  if (getaddrinfo(host.c_str(), service.c_str(), &hints, &literal->result) == 0) return literal;
  literal->result = nullptr;
  hints.ai_flags = AI_NUMERICSERV;
  Resolver resolver;
  {
    std::lock_guard<std::mutex> lock(resolver_mutex);
    resolver = CurrentResolver();
  }
  auto state = std::make_shared<Resolution>();
  try {
    std::thread([state, resolver, host, service, hints] {
      addrinfo* out = nullptr;
      int rc = resolver(host, service, &hints, &out);
      std::lock_guard<std::mutex> lock(state->mutex);
      state->rc = rc;
      state->result = out;
      state->done = true;
      state->done_cv.notify_all();
    }).detach();
  } catch (const std::system_error&) {
    return Unavailable("cannot resolve " + host + ": no thread for the resolver");
  }
  std::unique_lock<std::mutex> lock(state->mutex);
  if (!state->done_cv.wait_until(lock, deadline, [&] { return state->done; }))
    return DeadlineExceeded("resolving " + host + " did not finish within the deadline");
  if (state->rc != 0) return Unavailable("cannot resolve " + host + ": " + gai_strerror(state->rc));
  return state;
}

Result<std::unique_ptr<Socket>> Connect(const std::string& host, int port,
                                        Clock::time_point deadline,
                                        std::chrono::milliseconds connect_timeout) {
  std::string service = std::to_string(port);
  AIRLOCK_ASSIGN_OR_RETURN(std::shared_ptr<Resolution> resolved, Resolve(host, service, deadline));
  std::string last_error = "no address";
  for (addrinfo* a = resolved->result; a != nullptr; a = a->ai_next) {
    auto sock = std::make_unique<Socket>(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, 0));
    if (sock->fd() < 0) continue;
    fcntl(sock->fd(), F_SETFL, fcntl(sock->fd(), F_GETFL) | O_NONBLOCK);
    Clock::time_point until = std::min(deadline, Clock::now() + connect_timeout);
    if (connect(sock->fd(), a->ai_addr, a->ai_addrlen) == 0) return sock;
    if (errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    if (!WaitFor(sock->fd(), POLLOUT, until)) {
      last_error = "connection timed out";
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(sock->fd(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) return sock;
    last_error = std::strerror(err);
  }
  return Unavailable("cannot connect to " + host + ":" + service + ": " + last_error);
}

enum class Framing { kLength, kChunked, kClose };

struct Head {
  int status = 0;
  Framing framing = Framing::kClose;
  std::size_t content_length = 0;
};

Result<Head> ParseHead(std::string_view head) {
  // Status line: HTTP/1.x SSS reason
  std::size_t eol = head.find("\r\n");
  std::string_view line = head.substr(0, eol);
  if (line.size() < 12 || line.substr(0, 7) != "HTTP/1." || line[8] != ' ')
    return Corrupt("not an HTTP/1.x response");
  Head h;
  for (int i = 9; i < 12; ++i) {
    if (line[i] < '0' || line[i] > '9') return Corrupt("malformed HTTP status line");
    h.status = h.status * 10 + (line[i] - '0');
  }
  bool has_length = false;
  std::size_t pos = eol == std::string_view::npos ? head.size() : eol + 2;
  while (pos < head.size()) {
    std::size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) end = head.size();
    std::string_view field = head.substr(pos, end - pos);
    pos = end + 2;
    std::size_t colon = field.find(':');
    if (colon == std::string_view::npos) return Corrupt("malformed HTTP header line");
    std::string name = core::AsciiLower(std::string(field.substr(0, colon)));
    std::string_view value = field.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t'))
      value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    if (name == "transfer-encoding") {
      if (core::AsciiLower(std::string(value)).find("chunked") != std::string::npos)
        h.framing = Framing::kChunked;
    } else if (name == "content-length") {
      if (value.empty() || value.size() > 19) return Corrupt("malformed Content-Length");
      std::size_t n = 0;
      for (char c : value) {
        if (c < '0' || c > '9') return Corrupt("malformed Content-Length");
        n = n * 10 + static_cast<std::size_t>(c - '0');
      }
      if (has_length && n != h.content_length) return Corrupt("conflicting Content-Length");
      has_length = true;
      h.content_length = n;
    }
  }
  if (h.framing != Framing::kChunked && has_length) h.framing = Framing::kLength;
  return h;
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes a chunked body as it arrives. Each call resumes where the last one stopped, so every
// received byte is examined a bounded number of times (a size or trailer line at most twice) no
// matter how the peer splits its bytes: 100k one-byte chunks cost linear work, not quadratic.
class ChunkedDecoder {
 public:
  explicit ChunkedDecoder(std::size_t max_body) : max_body_(max_body) {}

  // `raw` is every body byte received so far (it only grows). true once the last chunk and the
  // trailers are in; false while more bytes are needed; an error for malformed framing.
  Result<bool> Feed(std::string_view raw) {
    for (;;) {
      switch (state_) {
        case State::kSizeLine:
        case State::kTrailerLine: {
          AIRLOCK_ASSIGN_OR_RETURN(std::optional<std::string_view> line, NextLine(raw));
          if (!line) return false;
          if (state_ == State::kTrailerLine) {
            if (line->empty()) {
              state_ = State::kDone;
              return true;
            }
            continue;  // a trailer field: read and dropped
          }
          AIRLOCK_TRY(StartChunk(*line));
          continue;
        }
        case State::kData: {
          std::size_t n = std::min(remaining_, raw.size() - pos_);
          body_.append(raw.substr(pos_, n));
          examined_ += n;
          pos_ += n;
          remaining_ -= n;
          if (remaining_ > 0) return false;
          state_ = State::kDataEnd;
          continue;
        }
        case State::kDataEnd:
          if (raw.size() - pos_ < 2) return false;
          examined_ += 2;
          if (raw.substr(pos_, 2) != "\r\n") return Corrupt("malformed chunk terminator");
          pos_ += 2;
          line_start_ = pos_;
          state_ = State::kSizeLine;
          continue;
        case State::kDone:
          return true;
      }
    }
  }

  std::string TakeBody() { return std::move(body_); }
  std::size_t bytes_examined() const { return examined_; }

 private:
  enum class State { kSizeLine, kData, kDataEnd, kTrailerLine, kDone };
  static constexpr std::size_t kMaxLine = 1024;

  // The next CRLF-terminated line (without CRLF), or nullopt while it is incomplete. Scanning
  // resumes at pos_, so a line that arrives byte by byte is still scanned once.
  Result<std::optional<std::string_view>> NextLine(std::string_view raw) {
    while (pos_ < raw.size()) {
      ++examined_;
      if (raw[pos_++] != '\n') continue;
      std::size_t end = pos_ - 1;  // the LF
      if (end == line_start_ || raw[end - 1] != '\r')
        return Corrupt("malformed chunk framing: a line not ended by CRLF");
      std::string_view line = raw.substr(line_start_, end - 1 - line_start_);
      line_start_ = pos_;
      return std::optional<std::string_view>(line);
    }
    if (raw.size() - line_start_ > kMaxLine) return Corrupt("malformed chunk size line");
    return std::optional<std::string_view>();
  }

  Status StartChunk(std::string_view size_line) {
    examined_ += size_line.size();
    if (std::size_t semi = size_line.find(';'); semi != std::string_view::npos)
      size_line = size_line.substr(0, semi);  // chunk extensions are ignored
    while (!size_line.empty() && size_line.back() == ' ') size_line.remove_suffix(1);
    if (size_line.empty() || size_line.size() > 15) return Corrupt("malformed chunk size");
    std::size_t size = 0;
    for (char c : size_line) {
      int digit = HexDigit(c);
      if (digit < 0) return Corrupt("malformed chunk size");
      size = size * 16 + static_cast<std::size_t>(digit);
    }
    if (size > max_body_ || body_.size() + size > max_body_)
      return LimitExceeded("response body exceeds " + std::to_string(max_body_) + " bytes");
    if (size == 0) {
      state_ = State::kTrailerLine;
    } else {
      remaining_ = size;
      state_ = State::kData;
    }
    return Status::Ok();
  }

  std::size_t max_body_;
  State state_ = State::kSizeLine;
  std::size_t pos_ = 0;         // the next byte of `raw` to examine
  std::size_t line_start_ = 0;  // where the line being read starts
  std::size_t remaining_ = 0;   // bytes left in the current chunk
  std::string body_;
  std::size_t examined_ = 0;
};

}  // namespace

void SetResolverForTesting(Resolver resolver) {
  std::lock_guard<std::mutex> lock(resolver_mutex);
  CurrentResolver() = resolver ? std::move(resolver) : Resolver(SystemResolver);
}

Result<HttpResponse> HttpPost(const std::string& host, int port, const std::string& path,
                              const std::vector<std::pair<std::string, std::string>>& headers,
                              const std::string& body, const HttpLimits& limits) {
  const Clock::time_point deadline = Clock::now() + limits.deadline;
  const std::string deadline_text =
      "no complete response within " + std::to_string(limits.deadline.count()) + " ms";
  AIRLOCK_ASSIGN_OR_RETURN(auto sock, Connect(host, port, deadline, limits.connect_timeout));
  const bool ipv6 = host.find(':') != std::string::npos;
  std::string request = "POST " + path + " HTTP/1.1\r\nHost: " + (ipv6 ? "[" + host + "]" : host) +
                        ":" + std::to_string(port) +
                        "\r\nContent-Type: application/json\r\nAccept: application/json\r\n"
                        "Connection: close\r\nContent-Length: " +
                        std::to_string(body.size()) + "\r\n";
  for (const auto& [name, value] : headers) request += name + ": " + value + "\r\n";
  request += "\r\n";
  request += body;
  std::size_t sent = 0;
  while (sent < request.size()) {
    ssize_t n = send(sock->fd(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      if (!WaitFor(sock->fd(), POLLOUT, deadline)) return DeadlineExceeded(deadline_text);
      continue;
    }
    return Unavailable(std::string("sending the request failed: ") + std::strerror(errno));
  }

  std::string raw;
  std::optional<Head> head;
  std::optional<ChunkedDecoder> chunked;
  std::size_t body_start = 0;
  char buf[16384];
  for (;;) {
    if (head) {
      std::string_view received = std::string_view(raw).substr(body_start);
      if (head->framing == Framing::kLength && received.size() >= head->content_length)
        return HttpResponse{head->status, std::string(received.substr(0, head->content_length))};
      if (head->framing == Framing::kChunked) {
        AIRLOCK_ASSIGN_OR_RETURN(bool complete, chunked->Feed(received));
        if (complete) {
          HttpResponse r{head->status, chunked->TakeBody()};
          r.framing_bytes_examined = chunked->bytes_examined();
          return r;
        }
        // Framing overhead is bounded too: at most 2x the body cap of raw chunked bytes.
        if (received.size() > 2 * limits.max_body_bytes + 1024)
          return LimitExceeded("response body exceeds " + std::to_string(limits.max_body_bytes) +
                               " bytes");
      }
      if (head->framing == Framing::kClose && received.size() > limits.max_body_bytes)
        return LimitExceeded("response body exceeds " + std::to_string(limits.max_body_bytes) +
                             " bytes");
    }
    if (!WaitFor(sock->fd(), POLLIN, deadline)) return DeadlineExceeded(deadline_text);
    ssize_t n = recv(sock->fd(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
      return Unavailable(std::string("reading the response failed: ") + std::strerror(errno));
    }
    if (n == 0) {
      if (head && head->framing == Framing::kClose)
        return HttpResponse{head->status, raw.substr(body_start)};
      return Unavailable("the connection closed before a complete response");
    }
    raw.append(buf, static_cast<std::size_t>(n));
    if (!head) {
      std::size_t end = raw.find("\r\n\r\n");
      if (end == std::string::npos) {
        if (raw.size() > limits.max_header_bytes)
          return LimitExceeded("response headers exceed " +
                               std::to_string(limits.max_header_bytes) + " bytes");
        continue;
      }
      if (end > limits.max_header_bytes)
        return LimitExceeded("response headers exceed " + std::to_string(limits.max_header_bytes) +
                             " bytes");
      AIRLOCK_ASSIGN_OR_RETURN(Head parsed, ParseHead(std::string_view(raw).substr(0, end)));
      if (parsed.framing == Framing::kLength && parsed.content_length > limits.max_body_bytes)
        return LimitExceeded("response body of " + std::to_string(parsed.content_length) +
                             " bytes exceeds " + std::to_string(limits.max_body_bytes) + " bytes");
      head = parsed;
      body_start = end + 4;
      if (head->framing == Framing::kChunked) chunked.emplace(limits.max_body_bytes);
    }
  }
}

}  // namespace airlock::assess
