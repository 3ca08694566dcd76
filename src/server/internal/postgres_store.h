// The PostgreSQL KeyStore (server/keys.h) for gateway replicas sharing one database, over libpq.
// Included only by server/store.cc, which chooses the store.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"
#include "policy/policy.h"
#include "server/keys.h"

struct pg_conn;  // libpq's PGconn

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
// 1: keys and reservations; 2: audit checkpoints published by the replicas.
constexpr int kPostgresSchemaVersion = 2;

// Connects, then creates or migrates the schema (under an advisory lock, so replicas starting
// together migrate once). Errors: kInvalidArgument (the URL holds a password, or is not a
// PostgreSQL URL), kUnavailable (cannot connect), kUnsupported (the database's schema is newer
// than this build), kIo (a migration failed).
Result<std::unique_ptr<KeyStore>> OpenPostgresKeyStore(const PostgresOptions& options);

// A postgresql:// (or postgres://) URL that libpq parses and that holds no password (a URL is
// printed in messages). Errors: kInvalidArgument.
Status ValidatePostgresUrl(const std::string& url);

// [store] of a policy as connection options (the password read from its file or variable).
// Errors: kInvalidArgument (no [store] url, a URL ValidatePostgresUrl refuses, both password
// sources, an empty or unset one), kIo.
Result<PostgresOptions> PostgresOptionsFor(const policy::Policy& policy);

// One connection with the settings every Airlock connection uses: a bounded connect, statements
// and lock waits bounded (10 s), the password only from `options`. Errors: kUnavailable naming
// the URL (never the password). The caller owns the connection (PQfinish).
Result<pg_conn*> ConnectPostgres(const PostgresOptions& options);

}  // namespace airlock::server::internal
