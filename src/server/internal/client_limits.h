// Per-client limits of the gateway beyond the connection caps: the address bucket a client is
// counted in (IPv4 by its /32, IPv6 by a configurable prefix, /64 by default, since one host
// usually holds a whole /64), and a cap on the completions one client address and one API key may
// have in flight at once. A completion holds a worker thread of the HTTP server for as long as it
// runs (a local model generating, an upstream answering slowly, a stream being written), so
// without these caps one client within its connection cap could occupy every worker.
// Thread-safety: ClientAddressBucket is pure; CompletionLimiter is thread-safe, and a Slot may be
// released on any thread, also after the limiter object is gone.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

namespace airlock::server::internal {

// The bucket an address is counted in: an IPv4 address (also IPv4-mapped IPv6, ::ffff:a.b.c.d)
// as itself; an IPv6 address as its first `ipv6_prefix_bits` bits ("2001:db8:1:2::/64"; 128
// gives the address itself as "addr/128"). A zone ("%eth0") is ignored. Text that is no address
// is returned unchanged. `ipv6_prefix_bits` is clamped to 1..128.
std::string ClientAddressBucket(std::string_view address, int ipv6_prefix_bits);

class CompletionLimiter {
 public:
  // Caps of completions in flight; each at least 1.
  CompletionLimiter(int per_address, int per_key);

  // A completion in flight; destroying it frees its place.
  class Slot;

  enum class Refusal { kNone, kAddress, kKey };
  struct Admission {
    std::shared_ptr<Slot> slot;  // null when refused
    Refusal refusal = Refusal::kNone;
    int limit = 0;  // the cap that refused it
  };
  // Takes a place for address bucket `bucket` and API key `key_id` ("" for an anonymous request,
  // which only the address cap limits), or says which cap is full.
  Admission TryAcquire(const std::string& bucket, const std::string& key_id);

  // Completions in flight for a bucket or a key (for tests and metrics).
  int InFlightForAddress(const std::string& bucket) const;
  int InFlightForKey(const std::string& key_id) const;

  struct Counts {
    std::mutex mu;
    std::map<std::string, int> per_address;
    std::map<std::string, int> per_key;
  };

 private:
  int per_address_;
  int per_key_;
  std::shared_ptr<Counts> counts_;
};

class CompletionLimiter::Slot {
 public:
  Slot(std::shared_ptr<Counts> counts, std::string bucket, std::string key_id);
  ~Slot();
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

 private:
  std::shared_ptr<Counts> counts_;
  std::string bucket_, key_id_;
};

}  // namespace airlock::server::internal
