// The key and certificate bundle paths read the same hostile JSON as the keyless one, under the
// same rules: one meaning per document (no duplicate keys, no byte-order mark, no member Airlock
// would not check, one key form, one DSSE signature). Each refusal mutates a real model_signing
// vector (v1.0.1 elliptic-key and certificate) whose unmutated bytes verify.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "sign/bundle.h"
#include "sign/internal/strict_json.h"
#include "sign/sign.h"
#include "sign_test_util.h"
#include "test_util.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sign::testing::ReadText;
using sign::testing::WriteText;

TEST(StrictJsonTest, DuplicateKeysAreRefusedAtAnyDepthButSiblingObjectsMayShareNames) {
  for (const char* bad : {R"({"a":1,"a":1})", R"({"a":{"b":1,"b":2}})",
                          R"([{"x":[{"k":1,"k":1}]}])", R"({"a":1,"\u0061":2})"})
    EXPECT_FALSE(internal::ParseStrictJson(bad, "t").has_value()) << bad;
  for (const char* good : {R"([{"a":1},{"a":2}])", R"({"a":{"b":1},"b":2})",
                           R"({"a":{"a":{"a":1}}})", R"({"a":[],"b":{}})"})
    EXPECT_TRUE(internal::ParseStrictJson(good, "t").has_value()) << good;
}

TEST(StrictJsonTest, ByteOrderMarkDeepNestingAndInvalidUtf8AreRefused) {
  EXPECT_FALSE(internal::ParseStrictJson("\xEF\xBB\xBF{}", "t").has_value());
  EXPECT_FALSE(
      internal::ParseStrictJson(std::string(65, '[') + std::string(65, ']'), "t").has_value());
  EXPECT_TRUE(
      internal::ParseStrictJson(std::string(64, '[') + std::string(64, ']'), "t").has_value());
  EXPECT_FALSE(internal::ParseStrictJson("{\"a\":\"\xff\"}", "t").has_value());
  EXPECT_FALSE(internal::ParseStrictJson("{\"a\":1} // comment", "t").has_value());
}

class KeyBundleStrictTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = airlock::testing::FixturesDir();
    if (!root || !fs::is_directory(*root / "model-signing"))
      GTEST_SKIP() << "third-party fixtures not found (../shared/fixtures/model-signing)";
    tests_ = *root / "model-signing/scripts/tests";
  }

  // Verifies the vector `folder` with its bundle replaced by edit(compact JSON text).
  VerifyResult VerifyEdited(const std::string& folder,
                            const std::function<std::string(std::string)>& edit) {
    json bundle = json::parse(ReadText(tests_ / folder / "model.sig"));
    fs::path sig = tmp_.path() / "edited.sig";
    WriteText(sig, edit(bundle.dump()));
    VerifyOptions o;
    fs::path keys = tests_ / "keys/certificate";
    if (folder.find("certificate") != std::string::npos)
      o.trust.ca_paths = {(keys / "ca-cert.pem").string()};
    else
      o.trust.public_key_path = (keys / "signing-key-pub.pem").string();
    o.signature_path = sig.string();
    o.ignore_paths = {(tests_ / folder / "model.sig").string(),
                      (tests_ / folder / "ignore-me").string()};
    auto r = VerifyModel((tests_ / folder).string(), o);
    EXPECT_TRUE(r.has_value()) << (r.has_value() ? "" : r.error().message());
    return r.has_value() ? *r : VerifyResult{};
  }
  VerifyResult VerifyEditedJson(const std::string& folder, const std::function<void(json&)>& edit) {
    return VerifyEdited(folder, [&](std::string text) {
      json j = json::parse(text);
      edit(j);
      return j.dump();
    });
  }

  fs::path tests_;
  airlock::testing::TempDir tmp_{"strict-bundle"};
};

std::string Insert(std::string text, const std::string& after, const std::string& what) {
  std::size_t pos = text.find(after);
  EXPECT_NE(pos, std::string::npos) << after;
  if (pos != std::string::npos) text.insert(pos + after.size(), what);
  return text;
}

TEST_F(KeyBundleStrictTest, UnmutatedVectorsVerify) {  // the control for every test below
  for (const char* folder : {"v1.0.1-elliptic-key", "v1.0.1-certificate"}) {
    VerifyResult r = VerifyEdited(folder, [](std::string t) { return t; });
    EXPECT_TRUE(r.verified) << folder << ": " << r.message;
  }
}

TEST_F(KeyBundleStrictTest, DuplicateKeysAreRefused) {
  for (const char* folder : {"v1.0.1-elliptic-key", "v1.0.1-certificate"}) {
    VerifyResult top = VerifyEdited(folder, [](std::string t) {
      return Insert(t, "{", std::string("\"mediaType\":\"") + kBundleMediaType + "\",");
    });
    EXPECT_EQ(top.failure, VerifyFailure::kMalformedBundle) << folder << ": " << top.message;
    EXPECT_NE(top.message.find("duplicate key"), std::string::npos) << top.message;
    VerifyResult inner = VerifyEdited(folder, [](std::string t) {
      return Insert(t, "\"payloadType\":\"application/vnd.in-toto+json\"",
                    ",\"payloadType\":\"application/vnd.in-toto+json\"");
    });
    EXPECT_EQ(inner.failure, VerifyFailure::kMalformedBundle) << folder << ": " << inner.message;
  }
}

TEST_F(KeyBundleStrictTest, TwoDsseSignaturesAreRefused) {
  VerifyResult r = VerifyEditedJson("v1.0.1-elliptic-key", [](json& b) {
    json& sigs = b["dsseEnvelope"]["signatures"];
    sigs.push_back(sigs[0]);
  });
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
  EXPECT_NE(r.message.find("exactly one"), std::string::npos) << r.message;
}

TEST_F(KeyBundleStrictTest, KeyAndCertificateChainTogetherAreRefused) {
  json cert = json::parse(ReadText(tests_ / "v1.0.1-certificate/model.sig"));
  VerifyResult r = VerifyEditedJson("v1.0.1-elliptic-key", [&](json& b) {
    b["verificationMaterial"]["x509CertificateChain"] =
        cert["verificationMaterial"]["x509CertificateChain"];
  });
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
  EXPECT_NE(r.message.find("more than one"), std::string::npos) << r.message;
}

TEST_F(KeyBundleStrictTest, UnknownMembersAreRefused) {
  std::vector<std::function<void(json&)>> edits = {
      [](json& b) { b["verification_material"] = b["verificationMaterial"]; },
      [](json& b) { b["verificationMaterial"]["publicKey"]["raw_bytes"] = "AAAA"; },
      [](json& b) { b["dsseEnvelope"]["payload_type"] = "application/json"; },
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    VerifyResult r = VerifyEditedJson("v1.0.1-elliptic-key", edits[i]);
    EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << i << ": " << r.message;
    EXPECT_NE(r.message.find("unknown member"), std::string::npos) << i << ": " << r.message;
  }
}

TEST_F(KeyBundleStrictTest, ByteOrderMarkIsRefused) {
  VerifyResult r =
      VerifyEdited("v1.0.1-certificate", [](std::string t) { return "\xEF\xBB\xBF" + t; });
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
}

TEST_F(KeyBundleStrictTest, DuplicateKeyInTheSignedStatementIsRefused) {
  // The statement is what the signature covers, so no signed bundle can carry this one; the
  // parser refuses it all the same (a subject digest read twice could be read two ways).
  auto bundle = ParseBundle(ReadText(tests_ / "v1.0.1-elliptic-key/model.sig"));
  ASSERT_TRUE(bundle.has_value());
  std::string payload = bundle->payload;
  ASSERT_TRUE(ParseStatement(payload).has_value());
  std::size_t pos = payload.find("\"predicateType\"");
  ASSERT_NE(pos, std::string::npos);
  payload.insert(pos, "\"predicateType\": \"https://example.com/other\",\n  ");
  auto st = ParseStatement(payload);
  ASSERT_FALSE(st.has_value());
  EXPECT_NE(st.error().message().find("duplicate key"), std::string::npos) << st.error().message();
}

}  // namespace
}  // namespace airlock::sign
