// OpenKeyStore: the one place that chooses where keys, budgets and rate limits live.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "server/internal/postgres_store.h"
#include "server/keys.h"

namespace airlock::server {

namespace internal {

Result<PostgresOptions> PostgresOptionsFor(const policy::Policy& policy) {
  const policy::StoreSettings& s = policy.store;
  if (s.url.empty()) return InvalidArgument("server: the policy has no [store] url");
  AIRLOCK_TRY(ValidatePostgresUrl(s.url));
  PostgresOptions o;
  o.url = s.url;
  if (!s.password_file.empty() && !s.password_env.empty())
    return InvalidArgument("server: [store] names both password_file and password_env; keep one");
  if (!s.password_file.empty()) {
    std::ifstream in(s.password_file, std::ios::binary);
    if (!in) return IoError("server: cannot read [store] password_file " + s.password_file);
    std::ostringstream text;
    text << in.rdbuf();
    o.password = text.str();
    // A mounted secret or `echo pw > file` ends with a newline that is not part of the password.
    while (!o.password.empty() && (o.password.back() == '\n' || o.password.back() == '\r'))
      o.password.pop_back();
    if (o.password.empty())
      return InvalidArgument("server: [store] password_file " + s.password_file + " is empty");
  } else if (!s.password_env.empty()) {
    const char* v = std::getenv(s.password_env.c_str());
    if (!v || !*v)
      return InvalidArgument("server: [store] password_env names " + s.password_env +
                             ", which is not set");
    o.password = v;
  }
  // A request settles within request_timeout_s; a reservation older than that plus a minute
  // belongs to a replica that died.
  o.reservation_lease_s = policy.server.request_timeout_s + 60;
  return o;
}

}  // namespace internal

Result<std::unique_ptr<KeyStore>> OpenKeyStore(const policy::Policy& policy) {
  const policy::StoreSettings& s = policy.store;
  if (s.url.empty()) {
    if (!s.password_file.empty() || !s.password_env.empty())
      return InvalidArgument(
          "server: [store] password_file/password_env are set but [store] url is not");
    return KeyStore::Open(policy.server.keys_db);
  }
  AIRLOCK_ASSIGN_OR_RETURN(internal::PostgresOptions o, internal::PostgresOptionsFor(policy));
  return internal::OpenPostgresKeyStore(o);
}

}  // namespace airlock::server
