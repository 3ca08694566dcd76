// Certificate policy of the certificate method (docs/signing.md, "Certificate policy"): each case
// builds a real chain with OpenSSL in the test (root CA -> intermediate CA -> signing
// certificate), signs a model with it and checks what verification says. Where Airlock is
// stricter than model_signing (which checks the chain at the leaf's notBefore, takes KeyUsage
// digitalSignature alone, and sets no key-strength floor), the test says so.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <memory>
#include <string>

#include "sign/sign.h"
#include "sign_test_util.h"
#include "test_util.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;
using sign::testing::WriteText;

constexpr long kDay = 24L * 3600;

struct Pkey {
  std::shared_ptr<EVP_PKEY> key;
  static Pkey Ec(const char* curve) {
    return {
        std::shared_ptr<EVP_PKEY>(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", curve), EVP_PKEY_free)};
  }
  static Pkey Rsa(std::size_t bits) {
    return {
        std::shared_ptr<EVP_PKEY>(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", bits), EVP_PKEY_free)};
  }
  std::string PrivatePem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(bio, key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return pem;
  }
};

struct CertSpec {
  std::string cn;
  bool ca = false;
  long not_before_days = -30;  // relative to now
  long not_after_days = 365;
  std::string key_usage;           // e.g. "critical,digitalSignature"; empty: no extension
  std::string extended_key_usage;  // e.g. "codeSigning"; empty: no extension
};

struct Cert {
  std::shared_ptr<X509> cert;
  Pkey key;
  std::string Pem() const {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert.get());
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string pem(data, static_cast<std::size_t>(n));
    BIO_free(bio);
    return pem;
  }
};

void AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `key` described by `spec`, issued by `issuer` (self-signed when null).
Cert Issue(const CertSpec& spec, const Pkey& key, const Cert* issuer) {
  static long serial = 100;
  X509* c = X509_new();
  X509_set_version(c, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(c), ++serial);
  X509_gmtime_adj(X509_getm_notBefore(c), spec.not_before_days * kDay);
  X509_gmtime_adj(X509_getm_notAfter(c), spec.not_after_days * kDay);
  X509_set_pubkey(c, key.key.get());
  X509_NAME* name = X509_get_subject_name(c);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509* issuer_cert = issuer ? issuer->cert.get() : c;
  X509_set_issuer_name(c, X509_get_subject_name(issuer_cert));
  AddExtension(c, issuer_cert, NID_basic_constraints,
               spec.ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
  AddExtension(c, issuer_cert, NID_subject_key_identifier, "hash");
  if (issuer) AddExtension(c, issuer_cert, NID_authority_key_identifier, "keyid:always");
  if (!spec.key_usage.empty()) AddExtension(c, issuer_cert, NID_key_usage, spec.key_usage);
  if (!spec.extended_key_usage.empty())
    AddExtension(c, issuer_cert, NID_ext_key_usage, spec.extended_key_usage);
  EVP_PKEY* signing_key = issuer ? issuer->key.key.get() : key.key.get();
  X509_sign(c, signing_key, EVP_sha256());
  return {std::shared_ptr<X509>(c, X509_free), key};
}

class CertPolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = tmp_.path() / "model";
    WriteText(model_ / "config.json", "{\"architectures\": [\"LlamaForCausalLM\"]}");
    WriteText(model_ / "model.safetensors", std::string(300, 'w'));
    root_ = Issue({"Test Root CA", true, -3650, 3650, "critical,keyCertSign,cRLSign", ""},
                  Pkey::Ec("P-256"), nullptr);
    WriteText(tmp_.path() / "root.pem", root_.Pem());
  }

  static CertSpec IntermediateSpec() {
    return {"Test Intermediate CA", true, -1000, 1000, "critical,keyCertSign,cRLSign", ""};
  }
  static CertSpec LeafSpec() {
    return {"model signer", false, -30, 365, "critical,digitalSignature", "codeSigning"};
  }

  // Signs the model with `leaf` (its key must be EC) under `intermediate`; returns the result of
  // verifying against the root CA.
  VerifyResult SignAndVerify(const Cert& intermediate, const Cert& leaf,
                             bool at_signing_time = false) {
    WriteText(tmp_.path() / "int.pem", intermediate.Pem());
    WriteText(tmp_.path() / "leaf.pem", leaf.Pem());
    WriteText(tmp_.path() / "leaf.key", leaf.key.PrivatePem());
    SignOptions s;
    s.key.private_key_path = (tmp_.path() / "leaf.key").string();
    s.key.signing_certificate_path = (tmp_.path() / "leaf.pem").string();
    s.key.certificate_chain_paths = {(tmp_.path() / "int.pem").string()};
    auto signed_model = SignModel(model_.string(), s);
    EXPECT_TRUE(signed_model.has_value()) << signed_model.error().message();
    VerifyOptions v;
    v.trust.ca_paths = {(tmp_.path() / "root.pem").string()};
    v.trust.at_signing_time = at_signing_time;
    auto r = VerifyModel(model_.string(), v);
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r.has_value() ? *r : VerifyResult{};
  }

  Cert Intermediate(const CertSpec& spec, const Pkey& key) { return Issue(spec, key, &root_); }
  Cert Leaf(const CertSpec& spec, const Cert& intermediate) {
    return Issue(spec, Pkey::Ec("P-256"), &intermediate);
  }

  airlock::testing::TempDir tmp_{"certpolicy"};
  fs::path model_;
  Cert root_;
};

TEST_F(CertPolicyTest, CodeSigningChainVerifies) {
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Rsa(2048));
  VerifyResult r = SignAndVerify(inter, Leaf(LeafSpec(), inter));
  EXPECT_TRUE(r.verified) << r.message;
  EXPECT_TRUE(r.warnings.empty());
}

TEST_F(CertPolicyTest, ServerAuthOnlyLeafIsRefused) {
  // KeyUsage digitalSignature + EKU serverAuth: an ordinary TLS certificate. model_signing
  // accepts it (digitalSignature suffices there); Airlock requires codeSigning once an EKU exists.
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Ec("P-256"));
  CertSpec tls = LeafSpec();
  tls.extended_key_usage = "serverAuth";
  VerifyResult r = SignAndVerify(inter, Leaf(tls, inter));
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("codeSigning"), std::string::npos) << r.message;
}

TEST_F(CertPolicyTest, KeyUsageWithoutDigitalSignatureIsRefusedEvenWithCodeSigning) {
  // model_signing accepts this leaf through its codeSigning EKU; Airlock wants both extensions,
  // when present, to allow signing.
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Ec("P-256"));
  CertSpec spec = LeafSpec();
  spec.key_usage = "critical,keyEncipherment";
  VerifyResult r = SignAndVerify(inter, Leaf(spec, inter));
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("digitalSignature"), std::string::npos) << r.message;
}

TEST_F(CertPolicyTest, LeafWithoutAnyUsageExtensionIsRefused) {
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Ec("P-256"));
  CertSpec spec = LeafSpec();
  spec.key_usage.clear();
  spec.extended_key_usage.clear();
  VerifyResult r = SignAndVerify(inter, Leaf(spec, inter));
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("may not sign"), std::string::npos) << r.message;
}

TEST_F(CertPolicyTest, ExpiredLeafIsRefusedNowAndAcceptedAtSigningTimeWithAWarning) {
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Ec("P-256"));
  CertSpec spec = LeafSpec();
  spec.not_before_days = -400;
  spec.not_after_days = -10;
  Cert leaf = Leaf(spec, inter);
  VerifyResult now = SignAndVerify(inter, leaf);
  EXPECT_EQ(now.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(now.message.find("expired"), std::string::npos) << now.message;
  // model_signing's rule (the chain at the leaf's notBefore), only when asked for, and said.
  VerifyResult archived = SignAndVerify(inter, leaf, /*at_signing_time=*/true);
  EXPECT_TRUE(archived.verified) << archived.message;
  ASSERT_EQ(archived.warnings.size(), 1u);
  EXPECT_NE(archived.warnings[0].find("notBefore"), std::string::npos);
}

TEST_F(CertPolicyTest, NotYetValidLeafIsRefusedEvenAtSigningTime) {
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Ec("P-256"));
  CertSpec spec = LeafSpec();
  spec.not_before_days = 3650;  // valid from ten years from now (model_signing accepts it)
  spec.not_after_days = 4000;
  Cert leaf = Leaf(spec, inter);
  VerifyResult now = SignAndVerify(inter, leaf);
  EXPECT_EQ(now.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(now.message.find("not yet valid"), std::string::npos) << now.message;
  VerifyResult at_signing = SignAndVerify(inter, leaf, /*at_signing_time=*/true);
  EXPECT_EQ(at_signing.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(at_signing.message.find("future"), std::string::npos) << at_signing.message;
}

TEST_F(CertPolicyTest, ExpiredIntermediateIsRefused) {
  // The intermediate expired 1,000 days ago; the leaf it issued before that still looks valid.
  CertSpec spec = IntermediateSpec();
  spec.not_before_days = -3000;
  spec.not_after_days = -1000;
  Cert inter = Intermediate(spec, Pkey::Ec("P-256"));
  CertSpec leaf_spec = LeafSpec();
  leaf_spec.not_before_days = -1200;
  leaf_spec.not_after_days = 365;
  VerifyResult r = SignAndVerify(inter, Leaf(leaf_spec, inter));
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("expired"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("Intermediate"), std::string::npos) << r.message;
}

TEST_F(CertPolicyTest, Rsa1024IntermediateIsRefused) {
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Rsa(1024));
  VerifyResult r = SignAndVerify(inter, Leaf(LeafSpec(), inter));
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("too"), std::string::npos) << r.message;  // "key too small/weak"
  // Not a matter of time: the archive mode refuses it too.
  EXPECT_EQ(SignAndVerify(inter, Leaf(LeafSpec(), inter), true).failure,
            VerifyFailure::kUntrustedCertificate);
}

TEST_F(CertPolicyTest, Rsa512IntermediateIsRefused) {
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Rsa(512));
  VerifyResult r = SignAndVerify(inter, Leaf(LeafSpec(), inter));
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("too"), std::string::npos) << r.message;
}

TEST_F(CertPolicyTest, EcP224IntermediateIsRefused) {
  // OpenSSL's level 2 lets 224-bit EC keys through; Airlock's floor is P-256.
  Cert inter = Intermediate(IntermediateSpec(), Pkey::Ec("P-224"));
  VerifyResult r = SignAndVerify(inter, Leaf(LeafSpec(), inter));
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate);
  EXPECT_NE(r.message.find("P-256"), std::string::npos) << r.message;
}

}  // namespace
}  // namespace airlock::sign
