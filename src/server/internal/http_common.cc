#include "server/internal/http_common.h"

#include <openssl/rand.h>

#include <span>

#include "core/hash.h"

namespace airlock::server::internal {
namespace {

std::string_view DefaultErrorType(int status) {
  switch (status) {
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "invalid_request_error";
    case 429:
      return "rate_limit_error";
    case 500:
      return "server_error";
    case 502:
    case 503:
    case 504:
      return "upstream_error";
    default:
      return "invalid_request_error";
  }
}
}  // namespace

std::string RandomId() {
  unsigned char b[8];
  if (RAND_bytes(b, sizeof b) != 1) return "0";
  return core::ToHex(std::span<const std::uint8_t>(b, sizeof b));
}

std::int64_t NowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string ErrorBody(int status, const std::string& message, const std::string& code,
                      const std::string& param) {
  json j = {{"error",
             {{"message", message},
              {"type", DefaultErrorType(status)},
              {"param", param.empty() ? json(nullptr) : json(param)},
              {"code", code.empty() ? json(nullptr) : json(code)}}}};
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

void SetError(HttpResponse& res, int status, const std::string& message, const std::string& code,
              const std::string& param) {
  res.status = status;
  res.set_content(ErrorBody(status, message, code, param), "application/json");
}

bool ParseBearer(const HttpRequest& req, std::string* token) {
  std::string h = req.get_header_value("Authorization");
  if (h.size() > 7 && (h.rfind("Bearer ", 0) == 0 || h.rfind("bearer ", 0) == 0)) {
    *token = h.substr(7);
    return true;
  }
  return false;
}

}  // namespace airlock::server::internal
