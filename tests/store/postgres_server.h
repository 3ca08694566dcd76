// A real PostgreSQL server for the tests of the PostgreSQL key store: initdb + pg_ctl from
// /usr/lib/postgresql/15/bin (or $AIRLOCK_PG_BIN) into a temporary folder, listening only on a
// Unix socket in that folder (no TCP), password authentication (SCRAM) for the user `airlock`.
// PostgreSQL refuses to run as root: as root the server runs as `nobody` through setpriv.
// One server per test binary (SharedPostgres); each test gets its own database. Also used by
// bench/store_bench.cc, so no GoogleTest here but the macro at the end (expanded in tests).
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>

#include "../shell_util.h"

namespace airlock::testing {

class PostgresServer {
 public:
  // Starts the server; on failure `skip_reason()` (binaries absent) or `error()` is set.
  PostgresServer() {
    const char* env = std::getenv("AIRLOCK_PG_BIN");
    bin_ = env ? env : "/usr/lib/postgresql/15/bin";
    if (!std::filesystem::exists(bin_ + "/initdb") || !std::filesystem::exists(bin_ + "/pg_ctl")) {
      skip_reason_ = "PostgreSQL server binaries not found in " + bin_ +
                     " (apt install postgresql-15, or set AIRLOCK_PG_BIN); `make check-postgres` "
                     "fails on this skip";
      return;
    }
    if (geteuid() == 0 && !std::filesystem::exists("/usr/bin/setpriv")) {
      skip_reason_ =
          "running as root and setpriv is absent: PostgreSQL refuses to run as root and cannot "
          "be started as another user";
      return;
    }
    char tmpl[] = "/tmp/airlock-pg-XXXXXX";
    if (!mkdtemp(tmpl)) {
      error_ = "mkdtemp failed";
      return;
    }
    dir_ = tmpl;
    std::random_device rd;
    std::mt19937 gen(rd());
    port_ = 20000 + static_cast<int>(gen() % 40000);
    const char* hex = "0123456789abcdef";
    for (int i = 0; i < 32; ++i) password_ += hex[gen() % 16];
    password_file_ = dir_ + "/password";
    std::ofstream(password_file_) << password_ << "\n";
    if (geteuid() == 0) {
      // The folder and the password file become the server user's; root still reaches both.
      RunShell("chown -R 65534:65534 " + Quote(dir_) + " && chmod 700 " + Quote(dir_));
    }
    auto init = AsServerUser(bin_ + "/initdb -D " + Quote(dir_ + "/data") +
                             " -U airlock --auth=scram-sha-256 --pwfile=" + Quote(password_file_) +
                             " -E UTF8 --locale=C --no-sync");
    if (init.first != 0) {
      error_ = "initdb failed: " + init.second;
      return;
    }
    auto start = Start();
    if (start.first != 0) {
      error_ = "pg_ctl start failed: " + start.second + Log();
      return;
    }
    started_ = true;
  }
  ~PostgresServer() {
    if (started_)
      AsServerUser(bin_ + "/pg_ctl -D " + Quote(dir_ + "/data") + " -m immediate -w stop");
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }

  bool ok() const { return started_; }
  // Stops the server at once (pg_ctl -m immediate: its processes are killed, no shutdown
  // checkpoint), as a crash or a lost database host would; Restart() brings it back on the same
  // socket and port. Both return (exit code, output).
  std::pair<int, std::string> Kill() const {
    return AsServerUser(bin_ + "/pg_ctl -D " + Quote(dir_ + "/data") + " -m immediate -w stop");
  }
  std::pair<int, std::string> Restart() const { return Start(); }
  const std::string& skip_reason() const { return skip_reason_; }
  const std::string& error() const { return error_; }
  const std::string& password() const { return password_; }
  const std::string& password_file() const { return password_file_; }
  const std::string& bin() const { return bin_; }

  // The [store] url of `database` (no password in it).
  std::string Url(const std::string& database) const {
    return "postgresql:///" + database + "?host=" + dir_ + "&port=" + std::to_string(port_) +
           "&user=airlock";
  }
  // Runs SQL with psql on `database`; returns (exit code, unaligned tuples-only output).
  std::pair<int, std::string> Psql(const std::string& database, const std::string& sql) const {
    auto r = RunShell("PGPASSWORD=" + password_ + " " + bin_ + "/psql -X -q -At -v " +
                      "ON_ERROR_STOP=1 -h " + Quote(dir_) + " -p " + std::to_string(port_) +
                      " -U airlock -d " + Quote(database) + " -c " + Quote(sql));
    while (!r.second.empty() && (r.second.back() == '\n' || r.second.back() == ' '))
      r.second.pop_back();
    return r;
  }
  // A fresh database for one test. Returns its name, or "" (and a failure message in `why`).
  std::string CreateDatabase(const std::string& name, std::string* why) const {
    auto r = Psql("postgres", "CREATE DATABASE " + name);
    if (r.first != 0) {
      *why = r.second;
      return "";
    }
    return name;
  }
  std::string Log() const {
    std::ifstream f(dir_ + "/postgres.log");
    return std::string(std::istreambuf_iterator<char>(f), {});
  }

 private:
  std::pair<int, std::string> Start() const {
    return AsServerUser(bin_ + "/pg_ctl -D " + Quote(dir_ + "/data") + " -w -t 60 -l " +
                        Quote(dir_ + "/postgres.log") + " -o " +
                        Quote("-c listen_addresses='' -k " + dir_ + " -p " + std::to_string(port_) +
                              " -c fsync=off -c max_connections=200") +
                        " start");
  }
  std::pair<int, std::string> AsServerUser(const std::string& cmd) const {
    if (geteuid() != 0) return RunShell(cmd);
    return RunShell("setpriv --reuid=65534 --regid=65534 --clear-groups -- sh -c " + Quote(cmd));
  }

  std::string bin_, dir_, password_, password_file_, skip_reason_, error_;
  int port_ = 0;
  bool started_ = false;
};

// The binary's one server, started on first use and stopped at exit.
inline PostgresServer& SharedPostgres() {
  static PostgresServer server;
  return server;
}

}  // namespace airlock::testing

// Skips (binaries absent) or fails (server did not start) the current test; else declares `pg`.
#define AIRLOCK_POSTGRES_OR_SKIP(pg)                                             \
  ::airlock::testing::PostgresServer& pg = ::airlock::testing::SharedPostgres(); \
  if (!pg.skip_reason().empty()) GTEST_SKIP() << pg.skip_reason();               \
  ASSERT_TRUE(pg.ok()) << pg.error()
