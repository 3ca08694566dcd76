// Public-key pins for TLS peers in the format of RFC 7469: the SHA-256 of a certificate's DER
// SubjectPublicKeyInfo, base64-encoded ("pin-sha256"). A pin names a key, not a certificate, so it
// survives re-issuance with the same key; several pins allow rotation. `airlock upstream pin`
// prints them; the gateway's upstream client checks a peer's chain against the policy's set.
// Thread-safety: pure functions.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

typedef struct x509_st X509;  // OpenSSL's certificate type (openssl/types.h)

namespace airlock::core {

// The pin of `cert`'s public key. Errors: kInvalidArgument for a null or key-less certificate.
Result<std::string> SpkiSha256Pin(const X509* cert);

// kOk when `pin` is well-formed: 44 characters of standard base64 decoding to 32 bytes.
// Errors: kInvalidArgument naming what is wrong (for policy loading).
Status ValidateSpkiPin(std::string_view pin);

// True when some certificate of `chain` (leaf first, as the peer sent it or as verified) has a key
// whose pin is in `pins`. RFC 7469 semantics: pinning the leaf's key, an intermediate's or the
// root's all work. An empty `pins` matches nothing (the caller decides whether pinning applies).
bool ChainMatchesPins(std::span<X509* const> chain, std::span<const std::string> pins);

// Lower-case hex SHA-256 of `cert`'s DER encoding: the certificate's fingerprint, as
// `openssl x509 -fingerprint -sha256` prints it (without colons). Errors: kInvalidArgument.
Result<std::string> CertificateSha256(const X509* cert);

// `cert`'s subject in RFC 2253 form ("CN=api.example.com,O=Example Inc,C=US"), as
// `airlock upstream pin` prints it (there escaped for the terminal). "" for a null certificate.
std::string SubjectRfc2253(const X509* cert);

// The UTF-8 values of the subject's organizationName (O) attributes, in order.
std::vector<std::string> SubjectOrganizations(const X509* cert);

}  // namespace airlock::core
