// OpenSSL 3 EVP wrappers for the signature formats: EC keys (P-256/P-384/P-521) in PEM or DER,
// ECDSA over a message with the curve's hash, key generation, and X.509 chain verification at a
// chosen time. Errors are Status values; no OpenSSL error escapes as an exception or a crash.
// Thread-safety: functions are independent; a key object is not shared while mutated.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace airlock::sign::internal {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// PEM private key (PKCS#8 or SEC1, optionally encrypted with `password`); text before the PEM
// block is skipped. Errors: kInvalidArgument (unreadable, wrong password, not EC, other curve).
Result<PkeyPtr> LoadPrivateKey(std::string_view pem, const std::string& password);
// PEM or DER SubjectPublicKeyInfo (text before the PEM block is skipped). Errors as above.
Result<PkeyPtr> LoadPublicKey(std::string_view bytes);
// Checks that `key` is EC on a supported curve; returns the digest model_signing pairs with it.
Result<const EVP_MD*> HashForKey(EVP_PKEY* key);
// "P-256", "P-384", "P-521" or "" when not a supported EC key.
std::string CurveName(EVP_PKEY* key);
// The public key as canonical PEM (64-column base64), the text whose SHA-256 is the bundle hint.
Result<std::string> CanonicalPublicPem(EVP_PKEY* key);
Result<std::string> PublicKeyHint(EVP_PKEY* key);

// DER ECDSA signature over `message` with `md`. Errors: kInternal.
Result<std::string> SignMessage(EVP_PKEY* key, const EVP_MD* md, std::string_view message);
bool VerifyMessage(EVP_PKEY* key, const EVP_MD* md, std::string_view message,
                   std::string_view der_signature);

// A fresh EC key pair as (PKCS#8 private PEM, SPKI public PEM). `curve` is "P-256" or "P-384".
Result<std::pair<std::string, std::string>> GenerateEcKey(const std::string& curve);

// Every certificate in a PEM text. Errors: kInvalidArgument when none parses.
Result<std::vector<X509Ptr>> LoadPemCertificates(std::string_view pem);
Result<X509Ptr> ParseDerCertificate(std::string_view der);
std::string DerOf(X509* cert);
std::string SubjectOf(X509* cert);

// Verifies that `leaf` chains through `intermediates` to one of `anchors` (a user-named CA may be
// an intermediate) under the policy documented at TrustAnchor (sign/sign.h): every certificate
// valid now (or, with `at_signing_time`, at the leaf's notBefore, which must not lie in the
// future), keys of OpenSSL security level 2 and EC >= P-256, and a leaf that may sign: KeyUsage,
// when present, includes digitalSignature; ExtendedKeyUsage, when present, includes codeSigning;
// at least one of the two is present. Errors: kPermissionDenied with the reason.
Status VerifyCertificateChain(X509* leaf, const std::vector<X509Ptr>& intermediates,
                              const std::vector<X509Ptr>& anchors, bool at_signing_time);
// The same policy evaluated at the time `at` (a verified signing time, e.g. a Rekor entry's).
Status VerifyCertificateChainAt(X509* leaf, const std::vector<X509Ptr>& intermediates,
                                const std::vector<X509Ptr>& anchors, std::time_t at);

}  // namespace airlock::sign::internal
