// What both libpq users in the server (the key store and the checkpoint publisher) need from
// libpq's results: ownership of a PGresult and the first line of its error text. Included only
// by .cc files that already include <libpq-fe.h>.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>

namespace airlock::server::internal {

struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using PgResult = std::unique_ptr<PGresult, PgResultDeleter>;

// The first line of libpq's message (it may span several lines with hints); never empty.
inline std::string PgFirstLine(const char* message) {
  std::string m = message ? message : "";
  if (auto nl = m.find('\n'); nl != std::string::npos) m.resize(nl);
  return m.empty() ? "unknown error" : m;
}

}  // namespace airlock::server::internal
