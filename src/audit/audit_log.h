// Tamper-evident audit log of gateway requests: an append-only RFC 6962 Merkle tree whose leaves
// are canonical JSON records, stored in SQLite (WAL), with periodic checkpoints that are C2SP
// tlog-checkpoint signed notes (origin, tree size, root; Ed25519, see audit/note.h). Each record
// also carries its sequence number and the previous leaf hash, so verification can name the first
// changed, removed or reordered record. Every new checkpoint is also handed to the configured
// anchors (audit/anchors.h: files, syslog, tlog witnesses) so that a copy lives outside the file.
// A log always has a signing key: Open() refuses to run without one (or creates one when asked),
// and VerifyLog() refuses to run without a pinned public key: it fails closed.
// See docs/audit.md for the threat model.
// Append() returns only after the record is committed (group commit across threads: the appending
// thread that finds no commit running commits every queued record in one transaction, the others
// wait for it), so a request answered after Append() survives kill -9; with OpenOptions::fsync it
// also survives power loss.
// Ownership: AuditLog owns its SQLite connection and a thread that signs the unsigned tail after
// checkpoint_idle_ms without appends. Thread-safety: Append() and
// Checkpoint() may be called from any number of threads; VerifyLog/ListRecords open their own
// read-only connection.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "audit/anchors.h"
#include "audit/note.h"
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
  // An https upstream's TLS peer on the connection the request used: the leaf certificate's
  // SHA-256 fingerprint (hex of its DER) and its key's RFC 7469 pin (base64). Also set when the
  // gateway refused the peer for its identity (then naming the certificate it refused). Empty
  // (and absent from the record) for local models, plain-HTTP upstreams and requests that never
  // got as far as a TLS handshake.
  std::string upstream_cert_sha256;
  std::string upstream_spki_sha256;
};

struct OpenOptions {
  std::string signing_key_pem_path;  // Ed25519 private key (PEM); required
  // When the key file does not exist: create it (and its public key at path + ".pub") and print
  // both paths and the verifier key to stderr once. When false, a missing key is an error.
  bool create_signing_key = false;
  // The checkpoint origin line (also the note key name). Empty: the one stored in the log, or for
  // a new log "<hostname>/airlock-audit/<8 random hex digits>". A log's origin never changes: a
  // different non-empty origin for an existing log is an error.
  std::string origin;
  AnchorOptions anchors;          // where each new checkpoint is also published
  int checkpoint_every = 100;     // records between checkpoints
  int checkpoint_idle_ms = 5000;  // also checkpoint an unsigned tail after this much idle time
  // false (default): synchronous=NORMAL in WAL mode: a committed record survives kill -9 of the
  // process (it is in the OS's page cache), not an OS crash or power loss. true: synchronous=FULL
  // (each group commit fsync'd; survives power loss, costs the disk's flush time per commit).
  bool fsync = false;
};

class AuditLog {
 public:
  // Opens or creates the log at `path`. Errors: kIo (SQLite), kNotFound (no key file and
  // !create_signing_key), kInvalidArgument (no key path, bad key file, origin mismatch, malformed
  // anchor option), kCorrupt (an existing database that is not an audit log).
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
  const std::string& origin() const;
  // The latest signed checkpoint note (empty when none yet).
  std::string LatestCheckpointNote() const;

 private:
  struct Impl;
  explicit AuditLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct VerifyOptions {
  // Pinned public keys (at least one): a PEM key (empty name) signs under the log's origin; a
  // verifier key applies to the log whose origin is its name.
  std::vector<NoteVerifier> public_keys;
  // Checkpoints published earlier (anchor file, witness, a saved `audit checkpoint`); those whose
  // origin is this log's are checked: signed by a pinned key and extended by the log (the log's
  // tree at that size has that root, so it is a prefix of the log). Others are ignored (and
  // counted by the caller). Any number of them costs one pass over the log.
  std::vector<Note> trusted_checkpoints;
};

struct VerifyReport {
  bool ok = false;
  std::string origin;
  std::uint64_t records = 0;
  std::uint64_t checkpoints = 0;
  std::uint64_t signed_checkpoints = 0;
  // Records after the last checkpoint (not yet signed). Nothing proves them: whoever can write
  // the file can rewrite or add them (their leaf hashes and chain use no key). A running server
  // signs its tail after checkpoint_idle_ms without appends, and when it stops.
  std::uint64_t unsigned_tail = 0;
  bool complete = false;              // ok covers every record: no unsigned tail
  std::uint64_t trusted_checked = 0;  // trusted checkpoints with this log's origin, all checked
  std::string first_problem;          // empty when ok
  std::vector<std::string> warnings;
};

// Checks the whole log offline: record sequence, leaf hashes, hash chain, every checkpoint's note
// (origin, size, root against the tree recomputed from the records, so consecutive checkpoints
// are consistent; signature by a pinned key), and that the log extends every trusted checkpoint
// of its origin (the same root at that size). One pass over the records, O(records + trusted
// checkpoints). A log without any checkpoint fails; records after the last checkpoint make the
// report incomplete (complete=false), since nothing signed vouches for them. Errors:
// kInvalidArgument (no pinned key), kNotFound, kIo, kCorrupt (not an audit log). A tampered log is
// not an error: it yields ok=false with first_problem set.
Result<VerifyReport> VerifyLog(const std::string& path, const VerifyOptions& options);

// The log's origin and latest checkpoint note (empty when none). Errors: kNotFound, kIo, kCorrupt.
struct LatestCheckpoint {
  std::string origin;
  std::string note;
};
Result<LatestCheckpoint> ReadLatestCheckpoint(const std::string& path);

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

// Writes a fresh Ed25519 private key (PEM, mode 0600) to `path` and its public key to
// `path` + ".pub". Errors: kIo.
Status GenerateSigningKey(const std::string& path);

}  // namespace airlock::audit
