// Failed authentications (401) and oversized bodies (413) for the audit log, aggregated per client
// address and minute: key guessing becomes visible without a flood of guesses flooding the log.
// The first failure of an address in a minute is recorded at once; the rest of that minute become
// one summary record when the minute is over (at the next failure from anyone, or at shutdown).
// The presented key is never seen here, so it can never be stored.
// Thread-safety: all methods are thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace airlock::server::internal {

class AuthFailureLog {
 public:
  // Addresses tracked per minute; beyond this, failures are counted under the address "*".
  static constexpr std::size_t kMaxAddresses = 4096;

  struct Entry {
    std::string address;
    std::int64_t minute = 0;  // Unix time / 60
    std::string endpoint;     // of the first failure
    int status = 0;           // of the first failure
    std::string reason;       // of the first failure, e.g. "invalid_api_key"
    std::int64_t count = 0;   // failures this entry stands for
    bool summary = false;     // false: the first failure; true: the rest of its minute
  };

  // Notes one failure; returns the entries to record now (the first failure of this address and
  // minute, and summaries of minutes that are over).
  std::vector<Entry> Record(const std::string& address, const std::string& endpoint, int status,
                            const std::string& reason, std::int64_t minute);
  // Summaries of everything still pending (at shutdown).
  std::vector<Entry> Flush();

 private:
  std::mutex mu_;
  // (minute, address) -> first failure, with count = failures after it
  std::map<std::pair<std::int64_t, std::string>, Entry> pending_;
};

}  // namespace airlock::server::internal
