#include "sign/internal/crypto.h"

#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstring>

namespace airlock::sign::internal {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

std::string OpenSslError() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

int PasswordCallback(char* buf, int size, int /*rwflag*/, void* u) {
  const auto* pw = static_cast<const std::string*>(u);
  if (!pw || pw->empty()) return 0;
  int n = static_cast<int>(std::min<std::size_t>(pw->size(), static_cast<std::size_t>(size)));
  std::memcpy(buf, pw->data(), static_cast<std::size_t>(n));
  return n;
}

Result<PkeyPtr> CheckEc(PkeyPtr key, const char* what) {
  if (EVP_PKEY_base_id(key.get()) != EVP_PKEY_EC)
    return InvalidArgument(std::string("sign: ") + what +
                           " is not an elliptic-curve key (model signing uses ECDSA P-256/P-384/"
                           "P-521)");
  if (CurveName(key.get()).empty())
    return InvalidArgument(std::string("sign: ") + what +
                           " uses an unsupported curve (P-256, P-384 or P-521 only)");
  return key;
}

}  // namespace

std::string CurveName(EVP_PKEY* key) {
  if (!key || EVP_PKEY_base_id(key) != EVP_PKEY_EC) return "";
  char name[64] = {0};
  std::size_t len = 0;
  if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, &len) != 1)
    return "";
  std::string n(name, len);
  if (n == "prime256v1" || n == "P-256" || n == "secp256r1") return "P-256";
  if (n == "secp384r1" || n == "P-384") return "P-384";
  if (n == "secp521r1" || n == "P-521") return "P-521";
  return "";
}

Result<PkeyPtr> LoadPrivateKey(std::string_view pem, const std::string& password) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  std::string pw = password;
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, PasswordCallback, &pw);
  if (!raw)
    return InvalidArgument("sign: cannot read the private key (PEM expected; wrong password?): " +
                           OpenSslError());
  return CheckEc(PkeyPtr(raw), "the private key");
}

Result<PkeyPtr> LoadPublicKey(std::string_view bytes) {
  ERR_clear_error();
  EVP_PKEY* raw = nullptr;
  if (bytes.find("-----BEGIN") != std::string_view::npos) {
    BioPtr bio = MemBio(bytes);
    raw = PEM_read_bio_PUBKEY(bio.get(), nullptr, nullptr, nullptr);
  } else {
    const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
    raw = d2i_PUBKEY(nullptr, &p, static_cast<long>(bytes.size()));
  }
  if (!raw)
    return InvalidArgument(
        "sign: cannot read the public key (PEM or DER SubjectPublicKeyInfo "
        "expected): " +
        OpenSslError());
  return CheckEc(PkeyPtr(raw), "the public key");
}

Result<const EVP_MD*> HashForKey(EVP_PKEY* key) {
  std::string curve = CurveName(key);
  if (curve == "P-256") return EVP_sha256();
  if (curve == "P-384") return EVP_sha384();
  if (curve == "P-521") return EVP_sha512();
  return InvalidArgument("sign: key is not ECDSA P-256, P-384 or P-521");
}

Result<std::string> CanonicalPublicPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1)
    return Internal("sign: cannot encode public key: " + OpenSslError());
  return BioContents(bio.get());
}

Result<std::string> PublicKeyHint(EVP_PKEY* key) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, CanonicalPublicPem(key));
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_Digest(pem.data(), pem.size(), md, &len, EVP_sha256(), nullptr) != 1)
    return Internal("sign: sha256 failed");
  static const char* kHex = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

Result<std::string> SignMessage(EVP_PKEY* key, const EVP_MD* md, std::string_view message) {
  ERR_clear_error();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1)
    return Internal("sign: ECDSA signing failed: " + OpenSslError());
  std::string sig(len, '\0');
  if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) != 1)
    return Internal("sign: ECDSA signing failed: " + OpenSslError());
  sig.resize(len);
  return sig;
}

bool VerifyMessage(EVP_PKEY* key, const EVP_MD* md, std::string_view message,
                   std::string_view der_signature) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(der_signature.data()),
                       der_signature.size(), reinterpret_cast<const unsigned char*>(message.data()),
                       message.size()) == 1;
  ERR_clear_error();
  return ok;
}

Result<std::pair<std::string, std::string>> GenerateEcKey(const std::string& curve) {
  const char* group = curve == "P-256" ? "P-256" : curve == "P-384" ? "P-384" : nullptr;
  if (!group) return InvalidArgument("sign: --curve must be p256 or p384");
  ERR_clear_error();
  PkeyPtr key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", group));
  if (!key) return Internal("sign: key generation failed: " + OpenSslError());
  BioPtr priv(BIO_new(BIO_s_mem()));
  if (!priv ||
      PEM_write_bio_PrivateKey(priv.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1)
    return Internal("sign: cannot encode private key: " + OpenSslError());
  AIRLOCK_ASSIGN_OR_RETURN(std::string pub, CanonicalPublicPem(key.get()));
  return std::make_pair(BioContents(priv.get()), pub);
}

Result<std::vector<X509Ptr>> LoadPemCertificates(std::string_view pem) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  std::vector<X509Ptr> certs;
  for (;;) {
    X509* c = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (!c) break;
    certs.emplace_back(c);
    if (certs.size() > 1000) break;
  }
  ERR_clear_error();
  if (certs.empty()) return InvalidArgument("sign: no PEM certificate found");
  return certs;
}

Result<X509Ptr> ParseDerCertificate(std::string_view der) {
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  X509* c = d2i_X509(nullptr, &p, static_cast<long>(der.size()));
  if (!c || p != reinterpret_cast<const unsigned char*>(der.data()) + der.size()) {
    X509_free(c);
    ERR_clear_error();
    return Corrupt("sign: malformed bundle: a certificate is not valid DER X.509");
  }
  return X509Ptr(c);
}

std::string DerOf(X509* cert) {
  unsigned char* out = nullptr;
  int n = i2d_X509(cert, &out);
  if (n <= 0) return "";
  std::string der(reinterpret_cast<char*>(out), static_cast<std::size_t>(n));
  OPENSSL_free(out);
  return der;
}

std::string SubjectOf(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_ONELINE);
  return BioContents(bio.get());
}

Status VerifyCertificateChainAt(X509* leaf, const std::vector<X509Ptr>& intermediates,
                                const std::vector<X509Ptr>& anchors, std::time_t at) {
  std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(), X509_STORE_free);
  std::unique_ptr<STACK_OF(X509), void (*)(STACK_OF(X509)*)> untrusted(
      sk_X509_new_null(), [](STACK_OF(X509) * s) { sk_X509_free(s); });
  std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                      X509_STORE_CTX_free);
  if (!store || !untrusted || !ctx) return Internal("sign: out of memory");
  for (const auto& a : anchors) X509_STORE_add_cert(store.get(), a.get());
  for (const auto& i : intermediates) sk_X509_push(untrusted.get(), i.get());
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1)
    return Internal("sign: cannot initialise certificate verification");
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  X509_VERIFY_PARAM_set_time(param, at);
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  // Security level 2: every key in the chain >= 112 bits (RSA/DSA >= 2048), no SHA-1 signatures.
  X509_VERIFY_PARAM_set_auth_level(param, 2);
  int ok = X509_verify_cert(ctx.get());
  ERR_clear_error();
  if (ok != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    X509* failed = X509_STORE_CTX_get_current_cert(ctx.get());
    std::string where = failed && failed != leaf ? " (at " + SubjectOf(failed) + ")" : "";
    return PermissionDenied("sign: untrusted certificate " + SubjectOf(leaf) + ": " +
                            X509_verify_cert_error_string(err) + where);
  }
  // Level 2 lets EC keys down to 224 bits through; model signing uses P-256 and up.
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  for (int i = 0; chain && i < sk_X509_num(chain); ++i) {
    X509* cert = sk_X509_value(chain, i);
    EVP_PKEY* key = X509_get0_pubkey(cert);
    if (!key) return PermissionDenied("sign: untrusted certificate: unreadable public key");
    if (EVP_PKEY_base_id(key) == EVP_PKEY_EC && EVP_PKEY_get_bits(key) < 256)
      return PermissionDenied("sign: untrusted certificate " + SubjectOf(cert) + ": EC key of " +
                              std::to_string(EVP_PKEY_get_bits(key)) +
                              " bits (P-256 or stronger required)");
  }
  std::uint32_t flags = X509_get_extension_flags(leaf);
  bool has_key_usage = flags & EXFLAG_KUSAGE;
  bool has_extended_key_usage = flags & EXFLAG_XKUSAGE;
  if (has_key_usage && !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE))
    return PermissionDenied("sign: signing certificate " + SubjectOf(leaf) +
                            " may not sign: its KeyUsage lacks digitalSignature");
  if (has_extended_key_usage && !(X509_get_extended_key_usage(leaf) & XKU_CODE_SIGN))
    return PermissionDenied("sign: signing certificate " + SubjectOf(leaf) +
                            " may not sign models: its ExtendedKeyUsage lacks codeSigning (a TLS "
                            "serverAuth/clientAuth certificate is no code signer)");
  if (!has_key_usage && !has_extended_key_usage)
    return PermissionDenied("sign: signing certificate " + SubjectOf(leaf) +
                            " may not sign (needs KeyUsage digitalSignature or ExtendedKeyUsage "
                            "codeSigning)");
  return Status::Ok();
}

Status VerifyCertificateChain(X509* leaf, const std::vector<X509Ptr>& intermediates,
                              const std::vector<X509Ptr>& anchors, bool at_signing_time) {
  // Without a verified timestamp the only trusted time is the clock. At the caller's request
  // (archived signatures), the leaf's notBefore as model_signing does; a notBefore in the future
  // is no signing time at all.
  std::time_t now = std::time(nullptr);
  std::time_t at = now;
  if (at_signing_time) {
    struct tm tm {};
    if (ASN1_TIME_to_tm(X509_get0_notBefore(leaf), &tm) != 1)
      return PermissionDenied("sign: untrusted certificate: unreadable notBefore");
    at = timegm(&tm);
    if (at > now)
      return PermissionDenied("sign: untrusted certificate " + SubjectOf(leaf) +
                              ": not valid before a time in the future (notBefore)");
  }
  return VerifyCertificateChainAt(leaf, intermediates, anchors, at);
}

}  // namespace airlock::sign::internal
