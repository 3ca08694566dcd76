#include "server/internal/auth_failures.h"

namespace airlock::server::internal {

std::vector<AuthFailureLog::Entry> AuthFailureLog::Record(const std::string& address,
                                                          const std::string& endpoint, int status,
                                                          const std::string& reason,
                                                          std::int64_t minute) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Entry> out;
  // Close the minutes that are over.
  for (auto it = pending_.begin(); it != pending_.end() && it->first.first < minute;) {
    if (it->second.count > 0) {
      Entry s = it->second;
      s.summary = true;
      out.push_back(std::move(s));
    }
    it = pending_.erase(it);
  }
  std::string who = address;
  if (!pending_.count({minute, who}) && pending_.size() >= kMaxAddresses) who = "*";
  auto [it, inserted] = pending_.try_emplace({minute, who});
  if (inserted) {
    it->second = Entry{who, minute, endpoint, status, reason, 0, false};
    Entry first = it->second;
    first.count = 1;
    out.push_back(std::move(first));
  } else {
    it->second.count++;
  }
  return out;
}

std::vector<AuthFailureLog::Entry> AuthFailureLog::Flush() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<Entry> out;
  for (auto& [k, e] : pending_) {
    if (e.count == 0) continue;
    Entry s = e;
    s.summary = true;
    out.push_back(std::move(s));
  }
  pending_.clear();
  return out;
}

}  // namespace airlock::server::internal
