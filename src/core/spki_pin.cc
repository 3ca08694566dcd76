#include "core/spki_pin.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include <algorithm>

#include "core/hash.h"
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

Result<std::string> CertificateSha256(const X509* cert) {
  if (cert == nullptr) return InvalidArgument("fingerprint: no certificate");
  unsigned char* der = nullptr;
  int len = i2d_X509(cert, &der);
  if (len <= 0 || der == nullptr)
    return InvalidArgument("fingerprint: cannot encode the certificate");
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(der, static_cast<std::size_t>(len), digest);
  OPENSSL_free(der);
  return ToHex(std::span<const std::uint8_t>(digest, sizeof digest));
}

std::string SubjectRfc2253(const X509* cert) {
  if (cert == nullptr) return "";
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "";
  X509_NAME_print_ex(bio, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data != nullptr && len > 0 ? std::string(data, static_cast<std::size_t>(len))
                                             : std::string());
  BIO_free(bio);
  return out;
}

std::vector<std::string> SubjectOrganizations(const X509* cert) {
  std::vector<std::string> out;
  const X509_NAME* name = cert != nullptr ? X509_get_subject_name(cert) : nullptr;
  if (name == nullptr) return out;
  for (int i = X509_NAME_get_index_by_NID(name, NID_organizationName, -1); i >= 0;
       i = X509_NAME_get_index_by_NID(name, NID_organizationName, i)) {
    const ASN1_STRING* value = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
    unsigned char* utf8 = nullptr;
    int len = ASN1_STRING_to_UTF8(&utf8, value);
    if (len >= 0 && utf8 != nullptr)
      out.emplace_back(reinterpret_cast<const char*>(utf8), static_cast<std::size_t>(len));
    OPENSSL_free(utf8);
  }
  return out;
}

}  // namespace airlock::core
