#include "core/spki_pin.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <algorithm>

#include "core/text.h"

namespace airlock::core {

Result<std::string> SpkiSha256Pin(const X509* cert) {
  if (cert == nullptr) return InvalidArgument("pin: no certificate");
  const X509_PUBKEY* key = X509_get_X509_PUBKEY(cert);
  if (key == nullptr) return InvalidArgument("pin: the certificate has no public key");
  unsigned char* der = nullptr;
  int len = i2d_X509_PUBKEY(key, &der);
  if (len <= 0 || der == nullptr) return InvalidArgument("pin: cannot encode the public key");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<std::size_t>(len), digest);
  OPENSSL_free(der);
  return Base64Encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

Status ValidateSpkiPin(std::string_view pin) {
  if (pin.size() != 44 || pin[43] != '=' || pin[42] == '=')
    return InvalidArgument("pin: an SPKI SHA-256 pin is 44 base64 characters ending in one '='");
  for (std::size_t i = 0; i < 43; ++i) {
    char c = pin[i];
    bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '+' || c == '/';
    if (!ok)
      return InvalidArgument("pin: not standard base64 (character " + std::to_string(i) + ")");
  }
  unsigned char out[33];
  if (EVP_DecodeBlock(out, reinterpret_cast<const unsigned char*>(pin.data()), 44) != 33)
    return InvalidArgument("pin: does not decode to 32 bytes");
  // Canonical form only: the 4 unused bits before '=' must be zero, so one key has one pin.
  if (Base64Encode(std::string_view(reinterpret_cast<const char*>(out), 32)) != pin)
    return InvalidArgument("pin: not in canonical base64");
  return Status::Ok();
}

bool ChainMatchesPins(std::span<X509* const> chain, std::span<const std::string> pins) {
  for (X509* cert : chain) {
    auto pin = SpkiSha256Pin(cert);
    if (pin.has_value() && std::find(pins.begin(), pins.end(), *pin) != pins.end()) return true;
  }
  return false;
}

}  // namespace airlock::core
