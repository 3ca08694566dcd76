#include "audit/anchors.h"

#include <fcntl.h>
#include <httplib.h>
#include <sqlite3.h>
#include <syslog.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <mutex>
#include <thread>

#include "audit/merkle.h"
#include "audit/note.h"

namespace airlock::audit {
namespace {

constexpr std::size_t kMaxAnswerBytes = 64 << 10;

struct WitnessUrl {
  std::string host;
  int port = 80;
  std::string prefix;  // "" or "/path" without a trailing slash
  std::string text;
};

Result<WitnessUrl> ParseWitnessUrl(const std::string& url) {
  WitnessUrl w;
  w.text = url;
  constexpr std::string_view kScheme = "http://";
  if (url.compare(0, kScheme.size(), kScheme) != 0)
    return InvalidArgument("audit: URL '" + url + "' must start with http://");
  std::string rest = url.substr(kScheme.size());
  std::size_t slash = rest.find('/');
  std::string hostport = rest.substr(0, slash);
  if (slash != std::string::npos) w.prefix = rest.substr(slash);
  while (!w.prefix.empty() && w.prefix.back() == '/') w.prefix.pop_back();
  std::size_t colon = hostport.rfind(':');
  w.host = hostport.substr(0, colon);
  if (colon != std::string::npos) {
    std::string port = hostport.substr(colon + 1);
    if (port.empty() || port.size() > 5 ||
        port.find_first_not_of("0123456789") != std::string::npos)
      return InvalidArgument("audit: witness URL '" + url + "': bad port");
    w.port = std::stoi(port);
    if (w.port < 1 || w.port > 65535)
      return InvalidArgument("audit: witness URL '" + url + "': bad port");
  }
  if (w.host.empty()) return InvalidArgument("audit: witness URL '" + url + "': no host");
  return w;
}

// Leaf hashes 0..size-1 of the log, read through a read-only connection.
Result<std::vector<Digest256>> ReadLeaves(const std::string& path, std::uint64_t size) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return IoError("audit: cannot read " + path + " for a consistency proof");
  }
  sqlite3_busy_timeout(db, 5000);
  sqlite3_stmt* s = nullptr;
  std::vector<Digest256> leaves;
  if (sqlite3_prepare_v2(db, "SELECT leaf_hash FROM records WHERE seq < ? ORDER BY seq", -1, &s,
                         nullptr) == SQLITE_OK) {
    sqlite3_bind_int64(s, 1, static_cast<sqlite3_int64>(size));
    while (sqlite3_step(s) == SQLITE_ROW) {
      if (sqlite3_column_bytes(s, 0) != 32) break;
      Digest256 d;
      std::memcpy(d.data(), sqlite3_column_blob(s, 0), 32);
      leaves.push_back(d);
    }
  }
  sqlite3_finalize(s);
  sqlite3_close(db);
  if (leaves.size() != size) return IoError("audit: " + path + " holds fewer leaves than expected");
  return leaves;
}

}  // namespace

struct Anchors::Impl {
  AnchorOptions options;
  std::string log_path, origin;
  std::vector<WitnessUrl> witnesses;
  std::vector<std::uint64_t> witness_sizes;  // the size each witness last cosigned (0: unknown)
  std::vector<NoteVerifier> witness_keys;

  std::mutex mu;
  std::condition_variable cv, idle_cv;
  std::deque<std::pair<std::string, std::uint64_t>> queue;
  bool busy = false, stop = false;
  std::uint64_t failures = 0;
  std::thread worker;

  void Fail(const std::string& what) {
    std::fprintf(stderr, "airlock audit: anchor: %s\n", what.c_str());
    std::lock_guard<std::mutex> lock(mu);
    ++failures;
  }

  void ToFile(const std::string& path, const std::string& note) {
    int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return Fail("cannot open " + path + ": " + std::strerror(errno));
    bool ok = ::write(fd, note.data(), note.size()) == static_cast<ssize_t>(note.size()) &&
              ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) Fail("write failed at " + path);
  }

  void ToSyslog(const std::string& note, std::uint64_t size) {
    // One line: the note itself has newlines, so it travels in base64 (`base64 -d` restores it).
    ::syslog(LOG_USER | LOG_NOTICE, "checkpoint origin=%s size=%llu note=%s", origin.c_str(),
             static_cast<unsigned long long>(size), Base64Encode(note).c_str());
  }

  void ToWitness(std::size_t i, const std::string& note_text, std::uint64_t size) {
    const WitnessUrl& w = witnesses[i];
    httplib::Client client(w.host, w.port);
    const int ms = options.witness_timeout_ms;
    client.set_connection_timeout(ms / 1000, (ms % 1000) * 1000);
    client.set_read_timeout(ms / 1000, (ms % 1000) * 1000);
    client.set_write_timeout(ms / 1000, (ms % 1000) * 1000);
    std::vector<Digest256> leaves;
    // Two tries: the first may learn the witness's size from a 409 answer.
    for (int attempt = 0; attempt < 2; ++attempt) {
      std::uint64_t old_size = witness_sizes[i];
      if (old_size > size)
        return Fail("witness " + w.text + " holds a checkpoint of size " +
                    std::to_string(old_size) + " but the log has only " + std::to_string(size) +
                    " records: the log was truncated or forked");
      std::string body = "old " + std::to_string(old_size) + "\n";
      if (old_size > 0 && old_size < size) {
        if (leaves.empty()) {
          auto l = ReadLeaves(log_path, size);
          if (!l) return Fail(l.error().message());
          leaves = std::move(*l);
        }
        for (const Digest256& h : ConsistencyProof(leaves, old_size, size))
          body +=
              Base64Encode(std::string_view(reinterpret_cast<const char*>(h.data()), 32)) + "\n";
      }
      body += "\n" + note_text;
      // The answer is read into a bounded buffer: a witness is a configured destination, not a
      // trusted one, and a cosignature answer is a few lines.
      httplib::Request req;
      req.method = "POST";
      req.path = w.prefix + "/add-checkpoint";
      req.set_header("Content-Type", "text/plain");
      req.body = body;
      std::string answer;
      bool too_large = false;
      req.content_receiver = [&](const char* data, std::size_t n, std::uint64_t, std::uint64_t) {
        if (answer.size() + n > kMaxAnswerBytes) return !(too_large = true);
        answer.append(data, n);
        return true;
      };
      auto res = client.send(req);
      if (!res)
        return Fail("witness " + w.text + ": " +
                    (too_large ? std::string("answer larger than 64 KiB")
                               : httplib::to_string(res.error())));
      res->body = std::move(answer);
      if (res->status == 409) {
        std::string s = res->body;
        while (!s.empty() && s.back() == '\n') s.pop_back();
        if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos)
          return Fail("witness " + w.text + ": 409 without a tree size");
        std::uint64_t theirs = std::strtoull(s.c_str(), nullptr, 10);
        if (theirs == old_size)  // same size, different root: the witness saw another tree
          return Fail("witness " + w.text + " holds a different checkpoint of size " + s +
                      ": the log was rewritten or forked");
        witness_sizes[i] = theirs;
        continue;
      }
      if (res->status != 200) {
        std::string said = res->body.substr(0, 200);  // the witness's words: no control bytes
        for (char& c : said)
          if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
        return Fail("witness " + w.text + " answered " + std::to_string(res->status) + ": " + said);
      }
      if (!witness_keys.empty()) {
        auto note = ParseNote(note_text + res->body);
        bool cosigned = false;
        if (note)
          for (const auto& sig : note->signatures)
            for (const auto& k : witness_keys) cosigned |= VerifyCosignature(*note, sig, k);
        if (!cosigned) return Fail("witness " + w.text + ": no valid cosignature in its answer");
      }
      witness_sizes[i] = size;
      return;
    }
    Fail("witness " + w.text + ": its size kept changing");
  }

  // Files and syslog get every checkpoint; a witness only needs the newest one (it proves the
  // older ones), so a slow witness never makes the queue grow.
  void Deliver(const std::deque<std::pair<std::string, std::uint64_t>>& batch) {
    for (const auto& [note, size] : batch) {
      for (const auto& f : options.files) ToFile(f, note);
      if (options.syslog) ToSyslog(note, size);
      for (const auto& sink : options.sinks) sink->Publish(note, size);
    }
    for (std::size_t i = 0; i < witnesses.size(); ++i)
      ToWitness(i, batch.back().first, batch.back().second);
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu);
    while (true) {
      cv.wait(lock, [&] { return stop || !queue.empty(); });
      if (queue.empty()) return;
      std::deque<std::pair<std::string, std::uint64_t>> batch;
      batch.swap(queue);
      busy = true;
      lock.unlock();
      Deliver(batch);
      lock.lock();
      busy = false;
      idle_cv.notify_all();
    }
  }
};

Result<std::string> FetchText(const std::string& url, int timeout_ms) {
  AIRLOCK_ASSIGN_OR_RETURN(WitnessUrl w, ParseWitnessUrl(url));
  httplib::Client client(w.host, w.port);
  client.set_connection_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
  client.set_read_timeout(timeout_ms / 1000, (timeout_ms % 1000) * 1000);
  constexpr std::size_t kMaxText = 64u << 20;
  std::string text;
  bool too_large = false;
  auto res = client.Get(w.prefix.empty() ? "/" : w.prefix, httplib::Headers{},
                        [&](const char* data, std::size_t n) {
                          if (text.size() + n > kMaxText) return !(too_large = true);
                          text.append(data, n);
                          return true;
                        });
  if (!res)
    return Unavailable(
        "audit: " + url + ": " +
        (too_large ? std::string("larger than 64 MiB") : httplib::to_string(res.error())));
  if (res->status != 200)
    return Unavailable("audit: " + url + " answered " + std::to_string(res->status));
  return text;
}

Anchors::Anchors(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Anchors::~Anchors() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stop = true;
  }
  impl_->cv.notify_all();
  if (impl_->worker.joinable()) impl_->worker.join();
}

Result<std::unique_ptr<Anchors>> Anchors::Create(const AnchorOptions& options,
                                                 const std::string& log_path,
                                                 const std::string& origin) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (impl->options.witness_timeout_ms < 100) impl->options.witness_timeout_ms = 100;
  impl->log_path = log_path;
  impl->origin = origin;
  for (const auto& url : options.witnesses) {
    AIRLOCK_ASSIGN_OR_RETURN(WitnessUrl w, ParseWitnessUrl(url));
    impl->witnesses.push_back(std::move(w));
  }
  impl->witness_sizes.assign(impl->witnesses.size(), 0);
  for (const auto& k : options.witness_keys) {
    AIRLOCK_ASSIGN_OR_RETURN(NoteVerifier v, ParseVerifierKey(k));
    if (v.type != 0x04)
      return InvalidArgument("audit: witness key '" + k + "' is not a cosignature key (type 0x04)");
    impl->witness_keys.push_back(std::move(v));
  }
  if (options.syslog) ::openlog("airlock-audit", LOG_PID, LOG_USER);
  Impl* raw = impl.get();
  impl->worker = std::thread([raw] { raw->Loop(); });
  return std::unique_ptr<Anchors>(new Anchors(std::move(impl)));
}

void Anchors::Publish(const std::string& note, std::uint64_t size) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->queue.emplace_back(note, size);
  }
  impl_->cv.notify_one();
}

void Anchors::Flush() {
  std::unique_lock<std::mutex> lock(impl_->mu);
  impl_->idle_cv.wait(lock, [&] { return impl_->queue.empty() && !impl_->busy; });
}

std::uint64_t Anchors::failures() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->failures;
}

}  // namespace airlock::audit
