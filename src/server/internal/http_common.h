// Small pieces every part of the gateway uses: request ids, wall-clock seconds, OpenAI-shaped
// error bodies, the bearer token of a request and the hop header that stops forwarding loops.
// Thread-safety: pure functions.
#pragma once

#include <chrono>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "server/internal/http_types.h"

namespace airlock::server::internal {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// 16 hex digits from the system CSPRNG ("0" if it fails).
std::string RandomId();
// Unix time in seconds.
std::int64_t NowSeconds();

// {"error":{"message","type","param","code"}} with the type OpenAI uses for `status`.
std::string ErrorBody(int status, const std::string& message, const std::string& code,
                      const std::string& param = "");
void SetError(HttpResponse& res, int status, const std::string& message, const std::string& code,
              const std::string& param = "");

// The token of an `Authorization: Bearer <token>` header.
bool ParseBearer(const HttpRequest& req, std::string* token);

// Hop header: each gateway appends its instance id when it forwards, and refuses a request that
// already carries its own id (a loop through other gateways) or too many hops.
inline constexpr const char* kHopHeader = "X-Airlock-Hops";
inline constexpr std::size_t kMaxHops = 8;

}  // namespace airlock::server::internal
