// Anchors: copies of each new audit checkpoint kept outside the log file, so that whoever can
// rewrite the SQLite file (and holds the signing key beside it) cannot also quietly roll back what
// was published. Sinks: append-only files (one note after another; put them on another volume or
// machine), syslog/journald (one line per checkpoint, the note in base64), and HTTP witnesses
// speaking C2SP tlog-witness `add-checkpoint` with an RFC 6962 consistency proof from the size the
// witness last saw. Nothing is sent to a destination the options do not name.
// Delivery runs on its own thread after the checkpoint is committed; a failed delivery is reported
// on stderr and retried with the next checkpoint, it never blocks or fails a request.
// Thread-safety: Publish() may be called from any thread; the destructor drains the queue.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace airlock::audit {

// A destination the audit module cannot reach by itself (the gateway's shared PostgreSQL store,
// server/checkpoints.h). Publish() is called from the anchors' delivery thread with every
// committed checkpoint, oldest first; it must return quickly (queue, and retry on its own).
class CheckpointSink {
 public:
  virtual ~CheckpointSink() = default;
  virtual void Publish(const std::string& note, std::uint64_t size) = 0;
};

struct AnchorOptions {
  std::vector<std::string> files;      // append-only files
  bool syslog = false;                 // LOG_USER|LOG_NOTICE, ident "airlock-audit"
  std::vector<std::string> witnesses;  // "http://host:port[/prefix]" (add-checkpoint is appended)
  // Verifier keys (type 0x04) of the witnesses; when given, a witness's answer must carry a valid
  // cosignature from one of them or the delivery counts as failed.
  std::vector<std::string> witness_keys;
  int witness_timeout_ms = 5000;
  std::vector<std::shared_ptr<CheckpointSink>> sinks;
  bool empty() const { return files.empty() && !syslog && witnesses.empty() && sinks.empty(); }
};

// GETs `url` ("http://host[:port]/path?query", e.g. a witness's /checkpoint?origin=...) and
// returns its body when the status is 200. The answer is bounded (64 MiB) and treated as hostile
// text by the caller. Errors: kInvalidArgument (URL), kUnavailable (network, status, size).
Result<std::string> FetchText(const std::string& url, int timeout_ms = 10000);

class Anchors {
 public:
  // `log_path` is read (read-only connection) for the leaf hashes of consistency proofs.
  // Errors: kInvalidArgument (a malformed witness URL or key).
  static Result<std::unique_ptr<Anchors>> Create(const AnchorOptions& options,
                                                 const std::string& log_path,
                                                 const std::string& origin);
  ~Anchors();
  Anchors(const Anchors&) = delete;
  Anchors& operator=(const Anchors&) = delete;

  // Queues a committed checkpoint note (tree size `size`) for every sink.
  void Publish(const std::string& note, std::uint64_t size);
  // Blocks until everything queued so far was attempted (tests, shutdown).
  void Flush();
  // Number of deliveries that failed so far (all sinks).
  std::uint64_t failures() const;

 private:
  struct Impl;
  explicit Anchors(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace airlock::audit
