#include "server/internal/client_limits.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace airlock::server::internal {

std::string ClientAddressBucket(std::string_view address, int ipv6_prefix_bits) {
  std::string text(address.substr(0, address.find('%')));
  if (text.size() >= 2 && text.front() == '[' && text.back() == ']')
    text = text.substr(1, text.size() - 2);
  in_addr a4;
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1) {
    char out[INET_ADDRSTRLEN];
    return inet_ntop(AF_INET, &a4, out, sizeof out) ? std::string(out) : text;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, text.c_str(), &a6) != 1) return std::string(address);
  // IPv4-mapped (::ffff:a.b.c.d): the IPv4 client it is.
  static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a6.s6_addr, kMapped, sizeof kMapped) == 0) {
    std::memcpy(&a4, a6.s6_addr + 12, 4);
    char out[INET_ADDRSTRLEN];
    return inet_ntop(AF_INET, &a4, out, sizeof out) ? std::string(out) : text;
  }
  int bits = std::clamp(ipv6_prefix_bits, 1, 128);
  for (int i = 0; i < 16; ++i) {
    int keep = std::clamp(bits - 8 * i, 0, 8);
    a6.s6_addr[i] &= static_cast<unsigned char>(0xff00u >> keep);
  }
  char out[INET6_ADDRSTRLEN];
  if (!inet_ntop(AF_INET6, &a6, out, sizeof out)) return text;
  return std::string(out) + "/" + std::to_string(bits);
}

CompletionLimiter::CompletionLimiter(int per_address, int per_key)
    : per_address_(std::max(1, per_address)),
      per_key_(std::max(1, per_key)),
      counts_(std::make_shared<Counts>()) {}

CompletionLimiter::Admission CompletionLimiter::TryAcquire(const std::string& bucket,
                                                           const std::string& key_id) {
  Admission a;
  std::lock_guard<std::mutex> lock(counts_->mu);
  auto address_it = counts_->per_address.find(bucket);
  if (address_it != counts_->per_address.end() && address_it->second >= per_address_) {
    a.refusal = Refusal::kAddress;
    a.limit = per_address_;
    return a;
  }
  if (!key_id.empty()) {
    auto key_it = counts_->per_key.find(key_id);
    if (key_it != counts_->per_key.end() && key_it->second >= per_key_) {
      a.refusal = Refusal::kKey;
      a.limit = per_key_;
      return a;
    }
    ++counts_->per_key[key_id];
  }
  ++counts_->per_address[bucket];
  a.slot = std::make_shared<Slot>(counts_, bucket, key_id);
  return a;
}

int CompletionLimiter::InFlightForAddress(const std::string& bucket) const {
  std::lock_guard<std::mutex> lock(counts_->mu);
  auto it = counts_->per_address.find(bucket);
  return it == counts_->per_address.end() ? 0 : it->second;
}

int CompletionLimiter::InFlightForKey(const std::string& key_id) const {
  std::lock_guard<std::mutex> lock(counts_->mu);
  auto it = counts_->per_key.find(key_id);
  return it == counts_->per_key.end() ? 0 : it->second;
}

CompletionLimiter::Slot::Slot(std::shared_ptr<Counts> counts, std::string bucket,
                              std::string key_id)
    : counts_(std::move(counts)), bucket_(std::move(bucket)), key_id_(std::move(key_id)) {}

CompletionLimiter::Slot::~Slot() {
  std::lock_guard<std::mutex> lock(counts_->mu);
  // Entries at zero are erased, so the maps hold only clients with completions in flight.
  if (auto it = counts_->per_address.find(bucket_);
      it != counts_->per_address.end() && --it->second <= 0)
    counts_->per_address.erase(it);
  if (key_id_.empty()) return;
  if (auto it = counts_->per_key.find(key_id_); it != counts_->per_key.end() && --it->second <= 0)
    counts_->per_key.erase(it);
}

}  // namespace airlock::server::internal
