// SHA-256 through OpenSSL 3's EVP interface: a streaming hasher, one-shot helpers, and hex
// encoding. Used by the scanner (content digests), signing (manifests) and the audit log.
// Thread-safety: a Sha256 object is not shared between threads; separate objects are independent.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "core/status.h"

namespace airlock::core {

using Digest256 = std::array<std::uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::span<const std::byte> data);
  void Update(std::string_view data);
  // Finishes and returns the digest; the object is reset for reuse.
  Digest256 Finish();

 private:
  void* ctx_;  // EVP_MD_CTX*, kept opaque so OpenSSL headers stay out of this header
};

Digest256 Sha256Of(std::span<const std::byte> data);
Digest256 Sha256Of(std::string_view data);

// Hashes a file in bounded memory (streamed reads). Errors: kNotFound, kIo.
Result<Digest256> Sha256File(const std::string& path);

std::string ToHex(std::span<const std::uint8_t> bytes);
inline std::string ToHex(const Digest256& d) { return ToHex(std::span<const std::uint8_t>(d)); }

}  // namespace airlock::core
