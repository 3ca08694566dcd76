// Audit checkpoints of gateway replicas, published to the shared PostgreSQL store ([store] url),
// so that a replica's log can be checked against what it published even if that replica, its
// disk or its signing key is gone. Each replica keeps its own Merkle log on its own disk
// (audit/audit_log.h) with its own origin; every checkpoint it signs is appended to the table
// airlock_audit_checkpoints (origin, tree size, root, the signed note; append-only).
// Publishing never blocks a request: the publisher is an audit::CheckpointSink that queues
// checkpoints in memory and delivers them from its own thread, retrying (with a growing pause,
// at most 5 s) while the database is unreachable; a database outage never stops auditing.
// `airlock audit verify --config POLICY` reads the table back (ReadPublishedCheckpoints) and
// checks every row against the replicas' logs.
// Thread-safety: the publisher may be called from any thread; ReadPublishedCheckpoints opens its
// own connection.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "audit/anchors.h"
#include "core/status.h"
#include "policy/policy.h"

namespace airlock::server {

class CheckpointPublisher : public audit::CheckpointSink {
 public:
  // Checkpoints queued and not yet in the store.
  virtual std::uint64_t pending() const = 0;
  // Checkpoints stored so far by this process.
  virtual std::uint64_t published() const = 0;
};

// A publisher to the policy's [store] (the schema is migrated by OpenKeyStore). Nothing is
// contacted here. At most 10000 checkpoints wait in memory; beyond that the oldest are dropped
// (the newest one published still pins everything before it). Errors: kInvalidArgument (no
// [store] url, password settings).
Result<std::shared_ptr<CheckpointPublisher>> OpenCheckpointPublisher(const policy::Policy& policy);

struct PublishedCheckpoint {
  std::string origin;  // as stored (untrusted until the note is verified)
  std::uint64_t size = 0;
  std::string root_base64;
  std::string note;  // the signed note as published
};

// Every checkpoint row of the policy's [store], oldest first. Errors: kInvalidArgument,
// kUnavailable (the database cannot be reached), kNotFound (no checkpoint table: the store's schema
// is older than checkpoint publishing), kIo.
Result<std::vector<PublishedCheckpoint>> ReadPublishedCheckpoints(const policy::Policy& policy);

}  // namespace airlock::server
