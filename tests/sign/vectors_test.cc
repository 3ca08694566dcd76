// The model_signing test vectors (scripts/tests/v*-{elliptic-key,certificate}) must verify; the
// signatures Airlock makes for the same models must carry the same manifest; and every kind of
// tampering must fail with its own precise reason.
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/file.h"
#include "sign/bundle.h"
#include "sign/internal/encoding.h"
#include "sign/sign.h"
#include "sign_test_util.h"
#include "test_util.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;
using sign::testing::CopyWritable;
using sign::testing::ReadText;
using sign::testing::StatementOf;
using sign::testing::WriteText;

// A throwaway self-signed CA certificate (PEM) for "wrong CA" tests.
std::string SelfSignedCaPem(const std::string& cn) {
  EVP_PKEY* key = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* cert = X509_new();
  X509_set_version(cert, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert), 7);
  X509_gmtime_adj(X509_getm_notBefore(cert), -3600L * 24 * 365 * 5);
  X509_gmtime_adj(X509_getm_notAfter(cert), 3600L * 24 * 365 * 20);
  X509_set_pubkey(cert, key);
  X509_NAME* name = X509_get_subject_name(cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert, name);
  X509_EXTENSION* bc =
      X509V3_EXT_conf_nid(nullptr, nullptr, NID_basic_constraints, "critical,CA:TRUE");
  X509_add_ext(cert, bc, -1);
  X509_EXTENSION_free(bc);
  X509_sign(cert, key, EVP_sha256());
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, cert);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<std::size_t>(n));
  BIO_free(bio);
  X509_free(cert);
  EVP_PKEY_free(key);
  return pem;
}

struct Vector {
  std::string folder;
  bool certificate;
  bool single_file;  // the model argument is <folder>/signme-1
};

const std::vector<Vector>& AllVectors() {
  static const std::vector<Vector> v = {
      {"v0.2.0-certificate", true, false},   {"v0.3.1-certificate", true, false},
      {"v1.0.0-certificate", true, false},   {"v1.0.1-certificate", true, false},
      {"v1.1.0-certificate", true, false},   {"v0.3.1-elliptic-key", false, true},
      {"v1.0.0-elliptic-key", false, true},  {"v1.0.1-elliptic-key", false, false},
      {"v1.1.0-elliptic-key", false, false},
  };
  return v;
}

VerifyOptions OptionsFor(const fs::path& tests, const Vector& v) {
  VerifyOptions o;
  fs::path keys = tests / "keys/certificate";
  if (v.certificate) {
    o.trust.ca_paths = {(keys / "ca-cert.pem").string()};
  } else {
    o.trust.public_key_path = (keys / "signing-key-pub.pem").string();
  }
  o.signature_path = (tests / v.folder / "model.sig").string();
  if (fs::exists(tests / v.folder / "ignore-me"))
    o.ignore_paths = {(tests / v.folder / "ignore-me").string()};
  return o;
}

std::string ModelArg(const fs::path& tests, const Vector& v) {
  return (v.single_file ? tests / v.folder / "signme-1" : tests / v.folder).string();
}

class VectorTest : public ::testing::TestWithParam<Vector> {};

TEST_P(VectorTest, Verifies) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "model-signing");
  fs::path tests = fixtures / "scripts/tests";
  const Vector& v = GetParam();
  auto r = VerifyModel(ModelArg(tests, v), OptionsFor(tests, v));
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(r->verified) << VerifyFailureName(r->failure) << ": " << r->message;
  EXPECT_EQ(r->failure, VerifyFailure::kNone);
  EXPECT_EQ(r->used_v02_compat, v.folder == "v0.2.0-certificate");
  EXPECT_GE(r->resources, 1u);
}

INSTANTIATE_TEST_SUITE_P(ModelSigning, VectorTest, ::testing::ValuesIn(AllVectors()),
                         [](const auto& info) {
                           std::string n = info.param.folder;
                           for (char& c : n)
                             if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                           return n;
                         });

TEST(VectorTest, KeylessSigstoreBundlesNeedATrustConfig) {
  AIRLOCK_FIXTURES_OR_SKIP(fixtures, "model-signing");
  fs::path tests = fixtures / "scripts/tests";
  for (const char* folder : {"v0.3.1-sigstore", "v1.1.0-sigstore"}) {
    VerifyOptions o;
    o.trust.ca_paths = {(tests / "keys/certificate/ca-cert.pem").string()};
    o.signature_path = (tests / folder / "model.sig").string();
    auto r = VerifyModel((tests / folder).string(), o);
    ASSERT_TRUE(r.has_value());
    EXPECT_FALSE(r->verified);
    EXPECT_EQ(r->failure, VerifyFailure::kUnsupported) << r->message;
    EXPECT_NE(r->message.find("keyless"), std::string::npos);
    EXPECT_NE(r->message.find("--trust-config"), std::string::npos);
  }
}

// Key used by the vectors, and a writable copy of a vector folder without its signature.
class SignFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = airlock::testing::FixturesDir();
    if (!root || !fs::is_directory(*root / "model-signing")) GTEST_SKIP() << "no fixtures";
    tests_ = *root / "model-signing/scripts/tests";
    keys_ = tests_ / "keys/certificate";
    model_ = tmp_.path() / "v1.1.0-elliptic-key";
    CopyWritable(tests_ / "v1.1.0-elliptic-key", model_);
    fs::remove(model_ / "model.sig");
  }

  SignOptions KeySign() const {
    SignOptions o;
    o.key.private_key_path = (keys_ / "signing-key.pem").string();
    o.ignore_paths = {(model_ / "ignore-me").string()};
    return o;
  }
  VerifyOptions KeyVerify() const {
    VerifyOptions o;
    o.trust.public_key_path = (keys_ / "signing-key-pub.pem").string();
    return o;
  }
  VerifyResult Verify(const VerifyOptions& o) const {
    auto r = VerifyModel(model_.string(), o);
    EXPECT_TRUE(r.has_value()) << r.error().message();
    return r.has_value() ? *r : VerifyResult{};
  }
  void SignOrDie() {
    auto s = SignModel(model_.string(), KeySign());
    ASSERT_TRUE(s.has_value()) << s.error().message();
  }
  fs::path Sig() const { return model_ / "model.sig"; }

  airlock::testing::TempDir tmp_{"signfx"};
  fs::path tests_, keys_, model_;
};

TEST_F(SignFixture, AirlockSignatureHasTheVectorsManifest) {
  SignOrDie();
  Statement ours = StatementOf(Sig());
  Statement theirs = StatementOf(tests_ / "v1.1.0-elliptic-key/model.sig");
  ASSERT_EQ(ours.subjects.size(), 1u);
  ASSERT_EQ(theirs.subjects.size(), 1u);
  EXPECT_EQ(ours.subjects[0].name, theirs.subjects[0].name);
  EXPECT_EQ(ours.subjects[0].sha256, theirs.subjects[0].sha256);
  EXPECT_EQ(ours.predicate_type, theirs.predicate_type);
  auto a = ManifestFromStatement(ours);
  auto b = ManifestFromStatement(theirs);
  ASSERT_TRUE(a.has_value() && b.has_value());
  ASSERT_EQ(a->manifest.resources.size(), b->manifest.resources.size());
  for (std::size_t i = 0; i < a->manifest.resources.size(); ++i) {
    EXPECT_EQ(a->manifest.resources[i].name, b->manifest.resources[i].name);
    EXPECT_EQ(a->manifest.resources[i].algorithm, b->manifest.resources[i].algorithm);
    EXPECT_EQ(a->manifest.resources[i].digest_hex, b->manifest.resources[i].digest_hex);
  }
  auto ours_ignored = a->manifest.serialization.ignore_paths;
  auto theirs_ignored = b->manifest.serialization.ignore_paths;
  std::sort(theirs_ignored.begin(), theirs_ignored.end());
  EXPECT_EQ(ours_ignored, theirs_ignored);
  // Same key hint, same bundle layout (compact JSON, same key order) as model_signing 1.1.
  auto ours_bundle = ParseBundle(ReadText(Sig()));
  auto theirs_bundle = ParseBundle(ReadText(tests_ / "v1.1.0-elliptic-key/model.sig"));
  ASSERT_TRUE(ours_bundle.has_value() && theirs_bundle.has_value());
  EXPECT_EQ(ours_bundle->public_key_hint, theirs_bundle->public_key_hint);
  Bundle relabeled = *theirs_bundle;
  EXPECT_EQ(SerializeBundle(relabeled), ReadText(tests_ / "v1.1.0-elliptic-key/model.sig"));
  EXPECT_TRUE(Verify(KeyVerify()).verified);
}

TEST_F(SignFixture, CertificateMethodRoundTripsAndMatchesTheVector) {
  SignOptions o = KeySign();
  o.key.signing_certificate_path = (keys_ / "signing-key-cert.pem").string();
  o.key.certificate_chain_paths = {(keys_ / "int-ca-cert.pem").string()};
  auto s = SignModel(model_.string(), o);
  ASSERT_TRUE(s.has_value()) << s.error().message();
  auto ours = ParseBundle(ReadText(Sig()));
  auto theirs = ParseBundle(ReadText(tests_ / "v1.1.0-certificate/model.sig"));
  ASSERT_TRUE(ours.has_value() && theirs.has_value());
  EXPECT_EQ(ours->certificate_chain, theirs->certificate_chain);
  VerifyOptions v;
  v.trust.ca_paths = {(keys_ / "ca-cert.pem").string()};
  VerifyResult r = Verify(v);
  EXPECT_TRUE(r.verified) << r.message;
  EXPECT_NE(r.signer.find("intermediate-ca"), std::string::npos);
}

TEST_F(SignFixture, CertificateNotMatchingTheKeyIsRefused) {
  SignOptions o = KeySign();
  o.key.signing_certificate_path = (keys_ / "ca-cert.pem").string();
  auto s = SignModel(model_.string(), o);
  ASSERT_FALSE(s.has_value());
  EXPECT_NE(s.error().message().find("does not match the private key"), std::string::npos);
}

TEST_F(SignFixture, TamperedByteIsAModifiedFile) {
  SignOrDie();
  std::string text = ReadText(model_ / "signme-2");
  text[0] ^= 1;
  WriteText(model_ / "signme-2", text);
  VerifyResult r = Verify(KeyVerify());
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kModelMismatch);
  EXPECT_EQ(r.diff.modified_files, std::vector<std::string>{"signme-2"});
  EXPECT_TRUE(r.diff.missing_files.empty());
  EXPECT_TRUE(r.diff.extra_files.empty());
  EXPECT_NE(r.message.find("1 modified file (signme-2)"), std::string::npos) << r.message;
}

TEST_F(SignFixture, EveryFlippedByteIsCaught) {
  SignOrDie();
  for (const char* name : {"signme-1", "signme-2"}) {
    const std::string original = ReadText(model_ / name);
    for (std::size_t i = 0; i < original.size(); ++i) {
      std::string text = original;
      text[i] ^= 0x20;
      WriteText(model_ / name, text);
      VerifyResult r = Verify(KeyVerify());
      EXPECT_EQ(r.failure, VerifyFailure::kModelMismatch) << name << " byte " << i;
      EXPECT_EQ(r.diff.modified_files, std::vector<std::string>{name}) << name << " byte " << i;
    }
    WriteText(model_ / name, original);
  }
  EXPECT_TRUE(Verify(KeyVerify()).verified);
}

TEST_F(SignFixture, AddedFileIsAnExtraFile) {
  SignOrDie();
  WriteText(model_ / "sub" / "payload.py", "import os");
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kModelMismatch);
  EXPECT_EQ(r.diff.extra_files, std::vector<std::string>{"sub/payload.py"});
  EXPECT_TRUE(r.diff.modified_files.empty());
  VerifyOptions lenient = KeyVerify();
  lenient.ignore_unsigned_files = true;
  EXPECT_TRUE(Verify(lenient).verified);
}

TEST_F(SignFixture, RemovedFileIsAMissingFile) {
  SignOrDie();
  fs::remove(model_ / "signme-1");
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kModelMismatch);
  EXPECT_EQ(r.diff.missing_files, std::vector<std::string>{"signme-1"});
  EXPECT_NE(r.message.find("missing file (signme-1)"), std::string::npos) << r.message;
}

TEST_F(SignFixture, AnotherKeyIsAWrongKey) {
  SignOrDie();
  auto pair = GenerateKeyPair("p256");
  ASSERT_TRUE(pair.has_value());
  WriteText(tmp_.path() / "other.pub", pair->public_pem);
  VerifyOptions o;
  o.trust.public_key_path = (tmp_.path() / "other.pub").string();
  VerifyResult r = Verify(o);
  EXPECT_EQ(r.failure, VerifyFailure::kWrongKey) << r.message;
  EXPECT_NE(r.message.find("wrong key"), std::string::npos);
}

TEST_F(SignFixture, AnotherKeyWithoutHintIsABadSignature) {
  SignOrDie();
  // Strip the hint (the pre-1.1 format): the signature check itself must catch the other key.
  auto b = ParseBundle(ReadText(Sig()));
  ASSERT_TRUE(b.has_value());
  nlohmann::json j = nlohmann::json::parse(ReadText(Sig()));
  j["verificationMaterial"]["publicKey"].erase("hint");
  WriteText(Sig(), j.dump());
  EXPECT_TRUE(Verify(KeyVerify()).verified);  // right key, older format: still fine
  auto pair = GenerateKeyPair("p384");
  ASSERT_TRUE(pair.has_value());
  WriteText(tmp_.path() / "other.pub", pair->public_pem);
  VerifyOptions o;
  o.trust.public_key_path = (tmp_.path() / "other.pub").string();
  VerifyResult r = Verify(o);
  EXPECT_EQ(r.failure, VerifyFailure::kBadSignature) << r.message;
}

TEST_F(SignFixture, CorruptedSignatureIsABadSignature) {
  SignOrDie();
  nlohmann::json j = nlohmann::json::parse(ReadText(Sig()));
  std::string sig =
      *internal::Base64Decode(j["dsseEnvelope"]["signatures"][0]["sig"].get<std::string>());
  sig[sig.size() - 3] ^= 0x40;
  j["dsseEnvelope"]["signatures"][0]["sig"] = internal::Base64Encode(sig);
  WriteText(Sig(), j.dump());
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kBadSignature) << r.message;
  EXPECT_NE(r.message.find("bad signature"), std::string::npos);
}

TEST_F(SignFixture, AlteredEnvelopePayloadIsABadSignature) {
  SignOrDie();
  nlohmann::json j = nlohmann::json::parse(ReadText(Sig()));
  std::string payload = *internal::Base64Decode(j["dsseEnvelope"]["payload"].get<std::string>());
  // Swap one file's digest for another's: a well-formed, consistent-looking lie.
  auto pos = payload.find("bc9a717d");
  ASSERT_NE(pos, std::string::npos);
  payload.replace(pos, 8, "00000000");
  j["dsseEnvelope"]["payload"] = internal::Base64Encode(payload);
  WriteText(Sig(), j.dump());
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kBadSignature) << r.message;
}

TEST_F(SignFixture, TruncatedBundleIsMalformed) {
  SignOrDie();
  std::string text = ReadText(Sig());
  WriteText(Sig(), text.substr(0, text.size() / 2));
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
  EXPECT_NE(r.message.find("not valid JSON"), std::string::npos);
}

TEST_F(SignFixture, BundleWithoutEnvelopeIsMalformed) {
  SignOrDie();
  nlohmann::json j = nlohmann::json::parse(ReadText(Sig()));
  j["dsseEnvelope"]["payload"] = "not base64!";
  WriteText(Sig(), j.dump());
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
  EXPECT_NE(r.message.find("base64"), std::string::npos);
  j.erase("dsseEnvelope");
  WriteText(Sig(), j.dump());
  r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle);
  EXPECT_NE(r.message.find("dsseEnvelope"), std::string::npos);
}

TEST_F(SignFixture, WrongMediaTypeIsUnsupported) {
  SignOrDie();
  nlohmann::json j = nlohmann::json::parse(ReadText(Sig()));
  j["mediaType"] = "application/vnd.dev.sigstore.bundle.v0.1+json";
  WriteText(Sig(), j.dump());
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kUnsupported);
  EXPECT_NE(r.message.find("media type"), std::string::npos);
}

// Attack: a signed single-file model is checked, then another file is renamed over its path. A
// check through the descriptor the caller loads from covers the opened file, not the new one
// (and a tampered file opened that way fails), so what is loaded is what was verified.
TEST_F(SignFixture, DescriptorIsHashedNotWhatThePathNamesNow) {
  const fs::path file = tmp_.path() / "single.gguf";
  WriteText(file, "GGUF the signed bytes");
  SignOptions so = KeySign();
  so.ignore_paths.clear();
  auto signed_file = SignModel(file.string(), so);
  ASSERT_TRUE(signed_file.has_value()) << signed_file.error().message();
  auto checked = core::PinnedFile::Open(file.string());
  ASSERT_TRUE(checked.has_value());
  const fs::path swap = tmp_.path() / "swap.gguf";
  WriteText(swap, "GGUF tampered bytes!!");
  fs::rename(swap, file);

  VerifyOptions by_path = KeyVerify();
  auto path_result = VerifyModel(file.string(), by_path);
  ASSERT_TRUE(path_result.has_value());
  EXPECT_EQ(path_result->failure, VerifyFailure::kModelMismatch) << path_result->message;

  VerifyOptions by_fd = KeyVerify();
  by_fd.model_fd = checked->fd();
  auto fd_result = VerifyModel(file.string(), by_fd);
  ASSERT_TRUE(fd_result.has_value()) << fd_result.error().message();
  EXPECT_TRUE(fd_result->verified) << fd_result->message;

  auto tampered = core::PinnedFile::Open(file.string());
  ASSERT_TRUE(tampered.has_value());
  by_fd.model_fd = tampered->fd();
  auto tampered_result = VerifyModel(file.string(), by_fd);
  ASSERT_TRUE(tampered_result.has_value());
  EXPECT_EQ(tampered_result->failure, VerifyFailure::kModelMismatch) << tampered_result->message;
}

TEST_F(SignFixture, ForeignPredicateIsUnsupported) {
  auto statement = MakeStatement("m", std::string(64, 'a'), "https://example.com/other/v1", "{}");
  ASSERT_TRUE(statement.has_value());
  auto bundle = SignStatement(*statement, KeySign().key);
  ASSERT_TRUE(bundle.has_value()) << bundle.error().message();
  WriteText(Sig(), *bundle);
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << r.message;
  EXPECT_NE(r.message.find("unsupported predicate type https://example.com/other/v1"),
            std::string::npos);
}

TEST_F(SignFixture, UnsupportedHashIsUnsupported) {
  std::string predicate =
      R"({"serialization":{"method":"files","hash_type":"blake2b","allow_symlinks":false},"resources":[]})";
  auto statement = MakeStatement("m", std::string(64, 'a'), kModelSigningPredicateType, predicate);
  ASSERT_TRUE(statement.has_value());
  auto bundle = SignStatement(*statement, KeySign().key);
  ASSERT_TRUE(bundle.has_value());
  WriteText(Sig(), *bundle);
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << r.message;
  EXPECT_NE(r.message.find("blake2b"), std::string::npos);
}

TEST_F(SignFixture, InconsistentRootDigestIsReported) {
  std::string predicate =
      R"({"serialization":{"method":"files","hash_type":"sha256","allow_symlinks":false},"resources":[{"algorithm":"sha256","digest":"bc9a717db6064a32cbe9eae6fc40651dd6d36ef1757183f590eff2b1765d7ebc","name":"signme-1"}]})";
  auto statement = MakeStatement("m", std::string(64, 'a'), kModelSigningPredicateType, predicate);
  ASSERT_TRUE(statement.has_value());
  auto bundle = SignStatement(*statement, KeySign().key);
  ASSERT_TRUE(bundle.has_value());
  WriteText(Sig(), *bundle);
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kInconsistentManifest) << r.message;
}

TEST_F(SignFixture, UntrustedCaIsRejected) {
  SignOptions o = KeySign();
  o.key.signing_certificate_path = (keys_ / "signing-key-cert.pem").string();
  o.key.certificate_chain_paths = {(keys_ / "int-ca-cert.pem").string()};
  ASSERT_TRUE(SignModel(model_.string(), o).has_value());
  // An unrelated, self-signed CA did not issue this chain.
  WriteText(tmp_.path() / "other-ca.pem", SelfSignedCaPem("other-root"));
  VerifyOptions bad;
  bad.trust.ca_paths = {(tmp_.path() / "other-ca.pem").string()};
  VerifyResult r = Verify(bad);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("untrusted certificate"), std::string::npos);
  // A bare key is no CA: asking for --certificate-chain with a public key file is a usage error.
  VerifyOptions not_a_cert;
  not_a_cert.trust.ca_paths = {(keys_ / "signing-key-pub.pem").string()};
  EXPECT_FALSE(VerifyModel(model_.string(), not_a_cert).has_value());
  // The bundle also verifies with the leaf's public key directly.
  VerifyResult by_key = Verify(KeyVerify());
  EXPECT_TRUE(by_key.verified) << by_key.message;
}

TEST_F(SignFixture, KeySignatureCheckedAgainstACaIsRefused) {
  SignOrDie();
  VerifyOptions o;
  o.trust.ca_paths = {(keys_ / "ca-cert.pem").string()};
  VerifyResult r = Verify(o);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("--key"), std::string::npos);
}

TEST_F(SignFixture, MissingSignatureIsReported) {
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kMissingSignature);
}

TEST_F(SignFixture, SymlinkAddedAfterSigningFailsVerification) {
  SignOrDie();
  fs::create_symlink(model_ / "signme-1", model_ / "link");
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.failure, VerifyFailure::kModelMismatch);
  EXPECT_NE(r.message.find("symbolic link"), std::string::npos) << r.message;
}

TEST_F(SignFixture, ShardedSignaturesVerifyAndLocateTampering) {
  WriteText(model_ / "weights.bin", std::string(100, 'w'));
  SignOptions o = KeySign();
  o.method = SerializationMethod::kShards;
  o.shard_size = 16;
  ASSERT_TRUE(SignModel(model_.string(), o).has_value());
  EXPECT_TRUE(Verify(KeyVerify()).verified);
  std::string w = ReadText(model_ / "weights.bin");
  w[50] = 'x';
  WriteText(model_ / "weights.bin", w);
  VerifyResult r = Verify(KeyVerify());
  EXPECT_EQ(r.diff.modified_files, std::vector<std::string>{"weights.bin"});
}

TEST_F(SignFixture, AttestationBindsToTheModelDigest) {
  std::string predicate = R"({"verdict":"clean","scanner":"airlock"})";
  std::vector<std::string> ignore = {(model_ / "ignore-me").string()};
  auto bundle =
      AttestModel(model_.string(), ignore, "https://airlock.dev/scan/v1", predicate, KeySign().key);
  ASSERT_TRUE(bundle.has_value()) << bundle.error().message();
  fs::path att = tmp_.path() / "scan.json";
  WriteText(att, *bundle);
  TrustAnchor trust;
  trust.public_key_path = (keys_ / "signing-key-pub.pem").string();
  auto ok = VerifyAttestation(model_.string(), att.string(), ignore, trust,
                              "https://airlock.dev/scan/v1");
  ASSERT_TRUE(ok.has_value());
  EXPECT_TRUE(ok->result.verified) << ok->result.message;
  EXPECT_EQ(ok->result.predicate_type, "https://airlock.dev/scan/v1");
  EXPECT_NE(ok->predicate_json.find("clean"), std::string::npos);
  // Same digest as a model signature over the same files.
  SignOrDie();
  EXPECT_EQ(ok->result.root_digest, StatementOf(Sig()).subjects[0].sha256);
  WriteText(model_ / "signme-1", "changed");
  auto changed = VerifyAttestation(model_.string(), att.string(), ignore, trust, "");
  ASSERT_TRUE(changed.has_value());
  EXPECT_EQ(changed->result.failure, VerifyFailure::kModelMismatch);
  EXPECT_EQ(changed->result.diff.modified_files, std::vector<std::string>{"signme-1"});
  // Asked for another kind of attestation, the same bundle fails before any hashing.
  auto other =
      VerifyAttestation(model_.string(), att.string(), ignore, trust, kScanAttestationType);
  ASSERT_TRUE(other.has_value());
  EXPECT_EQ(other->result.failure, VerifyFailure::kWrongPredicateType);
}

TEST_F(SignFixture, AttestationRecordsEveryResourceByName) {
  std::vector<std::string> ignore = {(model_ / "ignore-me").string()};
  auto bundle = AttestModel(model_.string(), ignore, kScanAttestationType, R"({"verdict":"clean"})",
                            KeySign().key);
  ASSERT_TRUE(bundle.has_value()) << bundle.error().message();
  fs::path att = tmp_.path() / "scan.json";
  WriteText(att, *bundle);
  nlohmann::json predicate = nlohmann::json::parse(StatementOf(att).predicate_json);
  EXPECT_EQ(predicate["modelKind"], "folder");
  EXPECT_EQ(predicate["verdict"], "clean");
  // The same resources as the model signature over the same files.
  SignOrDie();
  nlohmann::json signature = nlohmann::json::parse(StatementOf(Sig()).predicate_json);
  EXPECT_EQ(predicate["resources"], signature["resources"]);
  // A predicate may not smuggle its own manifest in.
  EXPECT_FALSE(AttestModel(model_.string(), ignore, kScanAttestationType, R"({"resources":[]})",
                           KeySign().key)
                   .has_value());
  // Two files swapping their contents keep the root digest only if the order is unchanged;
  // swapping names is caught by name in any case.
  std::string one = ReadText(model_ / "signme-1"), two = ReadText(model_ / "signme-2");
  WriteText(model_ / "signme-1", two);
  WriteText(model_ / "signme-2", one);
  TrustAnchor trust;
  trust.public_key_path = (keys_ / "signing-key-pub.pem").string();
  auto swapped =
      VerifyAttestation(model_.string(), att.string(), ignore, trust, kScanAttestationType);
  ASSERT_TRUE(swapped.has_value());
  EXPECT_EQ(swapped->result.failure, VerifyFailure::kModelMismatch);
  EXPECT_EQ(swapped->result.diff.modified_files.size(), 2u);
}

TEST(EncodingTest, PythonBytesReprMatchesPython) {
  EXPECT_EQ(internal::PythonBytesRepr("{\n  \"a\": 1\n}"), "b'{\\n  \"a\": 1\\n}'");
  EXPECT_EQ(internal::PythonBytesRepr("it's"), "b\"it's\"");
  EXPECT_EQ(internal::PythonBytesRepr("'\""), "b'\\'\"'");
  EXPECT_EQ(internal::PythonBytesRepr(std::string("\x00\x7f\xff\\\t", 5)),
            "b'\\x00\\x7f\\xff\\\\\\t'");
}

TEST(EncodingTest, Base64RoundTripsAndRejectsGarbage) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto back = internal::Base64Decode(internal::Base64Encode(s));
    ASSERT_TRUE(back.has_value());
    EXPECT_EQ(*back, s);
  }
  EXPECT_EQ(internal::Base64Encode("foobar"), "Zm9vYmFy");
  EXPECT_FALSE(internal::Base64Decode("Zm9v!").has_value());
  EXPECT_FALSE(internal::Base64Decode("Z").has_value());
  EXPECT_FALSE(internal::Base64Decode("Zm=9").has_value());
  EXPECT_EQ(*internal::Base64Decode("Zm8"), "fo");
}

TEST(BundleTest, DeeplyNestedJsonIsRejectedCleanly) {
  std::string deep(100000, '[');
  auto r = ParseBundle(deep);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kCorrupt);
}

TEST(BundleTest, PaeIsTheDsseEncoding) {
  EXPECT_EQ(Pae("application/vnd.in-toto+json", "{}"),
            "DSSEv1 28 application/vnd.in-toto+json 2 {}");
  EXPECT_EQ(PaeV02Compat("application/vnd.in-toto+json", "{\n}"),
            "DSSEV1 28 application/vnd.in-toto+json 3 b'{\\n}'");
}

}  // namespace
}  // namespace airlock::sign
