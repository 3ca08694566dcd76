// Tamper-evident audit log of gateway requests: an append-only RFC 6962 Merkle tree whose leaves
// are canonical JSON records, stored in SQLite (WAL, synchronous=FULL), with periodic ECDSA-signed
// checkpoints (tree size, root, time). Each record also carries its sequence number and the
// previous leaf hash, so verification can name the first changed, removed or reordered record.
// Append() returns only after the record is committed (group commit across threads), so a request
// answered after Append() survives kill -9; with OpenOptions::fsync it also survives power loss.
// Ownership: AuditLog owns its SQLite connection and writer thread. Thread-safety: Append() and
// Checkpoint() may be called from any number of threads; VerifyLog/ListRecords open their own
// read-only connection.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace airlock::audit {

struct AuditRecord {
  std::int64_t time_ms = 0;  // Unix time in milliseconds; filled in by Append() when 0
  std::string request_id;
  std::string endpoint;  // "/v1/chat/completions", ...
  std::string key_id;    // API key id ("anonymous" on loopback without keys)
  std::string model;
  std::string upstream;                   // upstream name, or "local"
  std::string jurisdiction;               // upstream jurisdiction, or "local"
  int status = 0;                         // HTTP status returned to the client
  std::vector<std::string> data_classes;  // detected in the prompt
  std::vector<std::string> actions;       // "email:pseudonymize", "block: <reason>", ...
  std::int64_t prompt_tokens = 0;
  std::int64_t completion_tokens = 0;
  std::string prompt_sha256;               // hex; of the prompt as received from the client
  std::string response_sha256;             // hex; of the response text as returned to the client
  std::optional<std::string> prompt_text;  // only when the policy stores text
  std::optional<std::string> response_text;
  std::optional<std::string> reasoning_text;  // reasoning action "log"
};

struct OpenOptions {
  std::string signing_key_pem_path;  // ECDSA private key (PEM); empty: checkpoints unsigned
  int checkpoint_every = 100;        // records between checkpoints
  int checkpoint_idle_ms = 5000;     // also checkpoint an unsigned tail after this much idle time
  // false (default): synchronous=NORMAL in WAL mode: a committed record survives kill -9 of the
  // process (it is in the OS's page cache), not an OS crash or power loss. true: synchronous=FULL
  // (each group commit fsync'd; survives power loss, costs the disk's flush time per commit).
  bool fsync = false;
};

class AuditLog {
 public:
  // Opens or creates the log at `path`. Errors: kIo (SQLite), kInvalidArgument (bad key file),
  // kCorrupt (an existing database that is not an audit log).
  static Result<std::unique_ptr<AuditLog>> Open(const std::string& path,
                                                const OpenOptions& options = {});
  ~AuditLog();  // writes a final checkpoint
  AuditLog(const AuditLog&) = delete;
  AuditLog& operator=(const AuditLog&) = delete;

  // Appends a record; returns its sequence number once it is durable. Errors: kIo.
  Result<std::uint64_t> Append(const AuditRecord& record);
  // Signs a checkpoint of the current tree if records were added since the last one.
  Status Checkpoint();
  std::uint64_t size() const;

 private:
  struct Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct VerifyReport {
  bool ok = false;
  std::uint64_t records = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t signed_checkpoints = 0;
  std::uint64_t unsigned_tail = 0;  // records after the last checkpoint (not yet signed)
  std::string first_problem;        // empty when ok
  std::vector<std::string> warnings;
};

// Checks the whole log offline: record sequence, leaf hashes, hash chain, every checkpoint's root
// against the recomputed tree, and checkpoint signatures (with `public_key_pem_path` when given,
// else the key recorded in the log). Errors: kNotFound, kIo, kCorrupt (not an audit log). A
// tampered log is not an error: it yields ok=false with first_problem set.
Result<VerifyReport> VerifyLog(const std::string& path,
                               const std::string& public_key_pem_path = "");

struct RecordFilter {
  std::string key_id;
  std::string model;
  std::string data_class;
  std::int64_t since_ms = 0;
  std::size_t limit = 100;
};

struct StoredRecord {
  std::uint64_t seq = 0;
  std::string json;  // the leaf data exactly as stored
};

// Lists records matching `filter`, newest last. Errors: kNotFound, kIo.
Result<std::vector<StoredRecord>> ListRecords(const std::string& path, const RecordFilter& filter);

// Writes a fresh ECDSA P-256 private key (PEM, mode 0600) to `path`. Errors: kIo.
Status GenerateSigningKey(const std::string& path);

}  // namespace airlock::audit
