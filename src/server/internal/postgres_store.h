// The PostgreSQL KeyStore (server/keys.h) for gateway replicas sharing one database, over libpq.
// Included only by server/store.cc, which chooses the store.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "server/keys.h"

namespace airlock::server::internal {

struct PostgresOptions {
  std::string url;       // postgresql:// or postgres:// URL, without a password
  std::string password;  // may be empty (peer/trust/certificate authentication)
  // A reservation not settled within this many seconds belongs to a replica that died (or lost
  // the database): the next reservation of its key charges it in full.
  int reservation_lease_s = 660;
  int max_connections = 8;  // per process
};

// The schema version this build creates and migrates to (table airlock_schema_version).
constexpr int kPostgresSchemaVersion = 1;

// Connects, then creates or migrates the schema (under an advisory lock, so replicas starting
// together migrate once). Errors: kInvalidArgument (the URL holds a password, or is not a
// PostgreSQL URL), kUnavailable (cannot connect), kUnsupported (the database's schema is newer
// than this build), kIo (a migration failed).
Result<std::unique_ptr<KeyStore>> OpenPostgresKeyStore(const PostgresOptions& options);

}  // namespace airlock::server::internal
