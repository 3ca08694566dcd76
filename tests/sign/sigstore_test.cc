// Keyless Sigstore bundles verified offline against a trusted root: model_signing's sigstore
// vectors (v0.3.1, v1.0.0, v1.0.1) verify with its custom_trust_config.json and the signer's
// identity, fail with another identity or issuer, and every tampered piece of the verification
// material (log entry body, integrated time, inclusion proof, checkpoint, log id, trust root)
// fails with its own reason. v1.1.0 carries an RFC 3161 timestamp from a TSA that this trust
// config does not list: it fails closed, naming that TSA.
#include "sign/internal/sigstore.h"

#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/wait.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>

#include "core/hash.h"
#include "sign/internal/crypto.h"
#include "sign/internal/encoding.h"
#include "sign/sign.h"
#include "sign_test_util.h"
#include "test_util.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using sign::testing::ReadText;
using sign::testing::WriteText;

constexpr char kIdentity[] = "stefanb@us.ibm.com";
constexpr char kIssuer[] = "https://sigstore.verify.ibm.com/oauth2";

class KeylessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto root = airlock::testing::FixturesDir();
    if (!root || !fs::is_directory(*root / "model-signing"))
      GTEST_SKIP() << "third-party fixtures not found (../shared/fixtures/model-signing)";
    fixtures_ = *root / "model-signing";
    tests_ = fixtures_ / "scripts/tests";
    trust_config_ = fixtures_ / "tests/_signing/testdata/custom_trust_config.json";
  }

  VerifyOptions Options(const std::string& version, const std::string& identity = kIdentity,
                        const std::string& issuer = kIssuer) {
    VerifyOptions o;
    o.trust.trust_config_path = trust_config_.string();
    o.trust.identity = identity;
    o.trust.identity_provider = issuer;
    o.ignore_paths = {(tests_ / (version + "-sigstore") / "ignore-me").string()};
    return o;
  }

  VerifyResult Verify(const std::string& version, VerifyOptions o) {
    auto r = VerifyModel((tests_ / (version + "-sigstore")).string(), o);
    EXPECT_TRUE(r.has_value()) << (r.has_value() ? "" : r.error().message());
    return r.has_value() ? *r : VerifyResult{};
  }

  // The v1.0.0 bundle, edited by `edit`, written next to a copy of the model.
  VerifyResult VerifyEdited(const std::function<void(json&)>& edit,
                            const std::string& trust_config = "") {
    json bundle = json::parse(ReadText(tests_ / "v1.0.0-sigstore/model.sig"));
    edit(bundle);
    return VerifyText(bundle.dump(), trust_config);
  }

  // The v1.0.0 bundle as compact JSON text, edited as text (for what a JSON value cannot hold,
  // such as a duplicate key).
  VerifyResult VerifyEditedText(const std::function<std::string(std::string)>& edit,
                                const std::string& trust_config = "") {
    json bundle = json::parse(ReadText(tests_ / "v1.0.0-sigstore/model.sig"));
    return VerifyText(edit(bundle.dump()), trust_config);
  }

  VerifyResult VerifyText(const std::string& bundle_text, const std::string& trust_config = "") {
    fs::path sig = tmp_.path() / "edited.sig";
    WriteText(sig, bundle_text);
    VerifyOptions o = Options("v1.0.0");
    o.signature_path = sig.string();
    o.ignore_paths.push_back((tests_ / "v1.0.0-sigstore/model.sig").string());
    if (!trust_config.empty()) {
      WriteText(tmp_.path() / "trust.json", trust_config);
      o.trust.trust_config_path = (tmp_.path() / "trust.json").string();
    }
    return Verify("v1.0.0", o);
  }

  json& Entry(json& bundle) { return bundle["verificationMaterial"]["tlogEntries"][0]; }

  fs::path fixtures_, tests_, trust_config_;
  airlock::testing::TempDir tmp_{"sigstore"};
};

TEST_F(KeylessTest, SigstoreVectorsVerifyOfflineWithTheTrustConfig) {
  for (const char* version : {"v0.3.1", "v1.0.0", "v1.0.1"}) {
    VerifyResult r = Verify(version, Options(version));
    EXPECT_TRUE(r.verified) << version << ": " << r.message;
    EXPECT_EQ(r.failure, VerifyFailure::kNone) << version;
    EXPECT_NE(r.signer.find(kIdentity), std::string::npos) << r.signer;
    EXPECT_NE(r.signer.find(kIssuer), std::string::npos) << r.signer;
    // The log entry was checked both ways: inclusion proof + checkpoint, and the SET.
    std::string checks;
    for (const auto& c : r.checks) checks += c + "\n";
    EXPECT_NE(checks.find("inclusion proof verified"), std::string::npos) << checks;
    EXPECT_NE(checks.find("signed entry timestamp verified"), std::string::npos) << checks;
  }
}

TEST_F(KeylessTest, AnotherIdentityFails) {
  for (const char* version : {"v0.3.1", "v1.0.0", "v1.0.1"}) {
    VerifyResult r = Verify(version, Options(version, "mallory@example.com"));
    EXPECT_FALSE(r.verified) << version;
    EXPECT_EQ(r.failure, VerifyFailure::kIdentityMismatch) << r.message;
    EXPECT_NE(r.message.find(kIdentity), std::string::npos) << r.message;
  }
}

TEST_F(KeylessTest, AnotherIdentityProviderFails) {
  VerifyResult r = Verify("v1.0.1", Options("v1.0.1", kIdentity, "https://accounts.google.com"));
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kIdentityMismatch) << r.message;
  EXPECT_NE(r.message.find("identity provider"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, IdentityIsComparedExactlyNotAsPrefix) {
  VerifyResult r = Verify("v1.0.0", Options("v1.0.0", "stefanb@us.ibm.co"));
  EXPECT_EQ(r.failure, VerifyFailure::kIdentityMismatch) << r.message;
}

// v1.1.0's RFC 3161 timestamp is signed by "O=sigstore.dev, CN=sigstore-tsa" (issued by
// sigstore-tsa-selfsigned), which this trust config snapshot does not list among its
// timestampAuthorities (it lists only GitHub's). Its time cannot be trusted offline, so the bundle
// fails closed, as it does in sigstore-js with the same trust root.
TEST_F(KeylessTest, TimestampFromATsaOutsideTheTrustConfigFailsClosed) {
  VerifyResult r = Verify("v1.1.0", Options("v1.1.0"));
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("RFC 3161"), std::string::npos) << r.message;
  EXPECT_NE(r.message.find("sigstore-tsa"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, KeylessBundleStillNeedsATrustRoot) {
  VerifyOptions o;
  o.trust.ca_paths = {(tests_ / "keys/certificate/ca-cert.pem").string()};
  VerifyResult r = Verify("v1.0.0", o);
  EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << r.message;
  EXPECT_NE(r.message.find("--trust-config"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, TrustConfigNeedsIdentityAndIssuer) {
  VerifyOptions o = Options("v1.0.0");
  o.trust.identity_provider.clear();
  auto r = VerifyModel((tests_ / "v1.0.0-sigstore").string(), o);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code(), StatusCode::kInvalidArgument);
}

TEST_F(KeylessTest, AlteredIntegratedTimeBreaksTheSignedEntryTimestamp) {
  VerifyResult r = VerifyEdited([&](json& b) { Entry(b)["integratedTime"] = "1746236000"; });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("signed entry timestamp"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, AlteredInclusionProofHashFails) {
  VerifyResult r = VerifyEdited([&](json& b) {
    Entry(b)["inclusionProof"]["hashes"][3] = internal::Base64Encode(std::string(32, 'x'));
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("inclusion proof"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, AlteredLeafIndexFails) {
  VerifyResult r =
      VerifyEdited([&](json& b) { Entry(b)["inclusionProof"]["logIndex"] = "84439918"; });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
}

TEST_F(KeylessTest, ForgedCheckpointSignatureFails) {
  VerifyResult r = VerifyEdited([&](json& b) {
    std::string cp = Entry(b)["inclusionProof"]["checkpoint"]["envelope"];
    // Flip one base64 character of the signature (keep the 4-byte key hint).
    std::size_t pos = cp.rfind(' ') + 12;
    cp[pos] = cp[pos] == 'A' ? 'B' : 'A';
    Entry(b)["inclusionProof"]["checkpoint"]["envelope"] = cp;
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("checkpoint"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, CheckpointForAnotherTreeFails) {
  VerifyResult r =
      VerifyEdited([&](json& b) { Entry(b)["inclusionProof"]["treeSize"] = "84439921"; });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
}

TEST_F(KeylessTest, LogEntryForAnotherPayloadFails) {
  // The v1.0.1 entry is a genuine Rekor entry with a valid proof, but for another signature.
  json other = json::parse(ReadText(tests_ / "v1.0.1-sigstore/model.sig"));
  VerifyResult r =
      VerifyEdited([&](json& b) { Entry(b) = other["verificationMaterial"]["tlogEntries"][0]; });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("another payload"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, SwappedDsseSignatureFails) {
  // A different (valid-looking) signature: the log entry no longer names it.
  json other = json::parse(ReadText(tests_ / "v1.0.1-sigstore/model.sig"));
  VerifyResult r = VerifyEdited([&](json& b) {
    b["dsseEnvelope"]["signatures"][0]["sig"] = other["dsseEnvelope"]["signatures"][0]["sig"];
  });
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
}

TEST_F(KeylessTest, AlteredPayloadFails) {
  VerifyResult r = VerifyEdited([&](json& b) {
    std::string payload = *internal::Base64Decode(b["dsseEnvelope"]["payload"].get<std::string>());
    payload[payload.find("sha256")] = 'S';
    b["dsseEnvelope"]["payload"] = internal::Base64Encode(payload);
  });
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
}

TEST_F(KeylessTest, EntryFromAnUnlistedLogFails) {
  VerifyResult r = VerifyEdited([&](json& b) {
    Entry(b)["logId"]["keyId"] = internal::Base64Encode(std::string(32, '\x11'));
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("does not list"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, BundleWithoutLogEntriesFails) {
  VerifyResult r =
      VerifyEdited([&](json& b) { b["verificationMaterial"]["tlogEntries"] = json::array(); });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
}

TEST_F(KeylessTest, WithoutTheSignedEntryTimestampThereIsNoSigningTime) {
  // The inclusion proof alone proves the entry is logged, not when: no time to check the
  // ten-minute certificate at.
  VerifyResult r = VerifyEdited([&](json& b) { Entry(b).erase("inclusionPromise"); });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("signing time"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, FulcioCaMissingFromTheTrustConfigFails) {
  json trust = json::parse(ReadText(trust_config_));
  // Keep only the 2021 Fulcio root (no intermediate the 2025 certificates chain to).
  auto& cas = trust["trustedRoot"]["certificateAuthorities"];
  json first = cas[0];
  cas = json::array({first});
  VerifyResult r = VerifyEdited([](json&) {}, trust.dump());
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
}

TEST_F(KeylessTest, CertificateAuthorityNotValidAtTheSigningTimeFails) {
  json trust = json::parse(ReadText(trust_config_));
  for (auto& ca : trust["trustedRoot"]["certificateAuthorities"])
    ca["validFor"] = {{"start", "2021-03-07T03:20:29.000Z"}, {"end", "2022-04-13T20:06:15.000Z"}};
  VerifyResult r = VerifyEdited([](json&) {}, trust.dump());
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("valid then"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, LogKeyNotValidAtTheIntegratedTimeFails) {
  json trust = json::parse(ReadText(trust_config_));
  for (auto& t : trust["trustedRoot"]["tlogs"])
    t["publicKey"]["validFor"]["end"] = "2022-01-01T00:00:00.000Z";
  VerifyResult r = VerifyEdited([](json&) {}, trust.dump());
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
}

TEST_F(KeylessTest, BareTrustedRootIsAccepted) {
  json trust = json::parse(ReadText(trust_config_));
  VerifyResult r = VerifyEdited([](json&) {}, trust["trustedRoot"].dump());
  EXPECT_TRUE(r.verified) << r.message;
}

// --- The bundle as hostile input: every refusal below mutates the real v1.0.0 vector. ---

std::string ReplaceOnce(std::string text, const std::string& from, const std::string& to) {
  std::size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << "not found: " << from;
  if (pos != std::string::npos) text.replace(pos, from.size(), to);
  return text;
}

TEST_F(KeylessTest, DuplicateKeyInTheBundleIsRefused) {
  // Same value twice: harmless-looking, but which copy a parser keeps is its own choice.
  VerifyResult same = VerifyEditedText([](std::string t) {
    return ReplaceOnce(
        t, "{\"dsseEnvelope\":",
        std::string("{\"mediaType\":\"") + kBundleMediaType + "\",\"dsseEnvelope\":");
  });
  EXPECT_EQ(same.failure, VerifyFailure::kMalformedBundle) << same.message;
  EXPECT_NE(same.message.find("duplicate key \"mediaType\""), std::string::npos) << same.message;
  // A second signature list that a last-wins parser would read instead of the first.
  json other = json::parse(ReadText(tests_ / "v1.0.1-sigstore/model.sig"));
  VerifyResult shadow = VerifyEditedText([&](std::string t) {
    return ReplaceOnce(
        t, "\"dsseEnvelope\":{",
        "\"dsseEnvelope\":{\"signatures\":" + other["dsseEnvelope"]["signatures"].dump() + ",");
  });
  EXPECT_EQ(shadow.failure, VerifyFailure::kMalformedBundle) << shadow.message;
  EXPECT_NE(shadow.message.find("duplicate key \"signatures\""), std::string::npos)
      << shadow.message;
}

TEST_F(KeylessTest, ByteOrderMarkIsRefused) {
  VerifyResult r = VerifyEditedText([](std::string t) { return "\xEF\xBB\xBF" + t; });
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
  EXPECT_NE(r.message.find("byte-order mark"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, SnakeCaseAliasesAndUnknownMembersAreRefused) {
  // protobuf JSON reads "tlog_entries" as tlogEntries: a reader that skips it would check less
  // than another verifier of the same bytes.
  std::vector<std::function<void(json&)>> edits = {
      [](json& b) { b["verificationMaterial"]["tlog_entries"] = json::array(); },
      [](json& b) { b["dsse_envelope"] = b["dsseEnvelope"]; },
      [&](json& b) { Entry(b)["inclusion_promise"] = Entry(b)["inclusionPromise"]; },
      [&](json& b) { Entry(b)["inclusionProof"]["tree_size"] = "1"; },
      [](json& b) { b["dsseEnvelope"]["signatures"][0]["public_key"] = "x"; },
      [](json& b) { b["verificationMaterial"]["certificate"]["raw_bytes"] = "AAAA"; },
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    VerifyResult r = VerifyEdited(edits[i]);
    EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << i << ": " << r.message;
    EXPECT_NE(r.message.find("unknown member"), std::string::npos) << i << ": " << r.message;
  }
}

TEST_F(KeylessTest, TwoKeyFormsInTheVerificationMaterialAreRefused) {
  VerifyResult r = VerifyEdited([](json& b) {
    b["verificationMaterial"]["x509CertificateChain"] = {
        {"certificates", {b["verificationMaterial"]["certificate"]}}};
  });
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
  EXPECT_NE(r.message.find("more than one"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, MessageSignatureBesideTheEnvelopeIsRefused) {
  VerifyResult r = VerifyEdited([](json& b) {
    b["messageSignature"] = {{"signature", b["dsseEnvelope"]["signatures"][0]["sig"]}};
  });
  EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
}

TEST_F(KeylessTest, TwoDsseSignaturesAreRefused) {
  json other = json::parse(ReadText(tests_ / "v1.0.1-sigstore/model.sig"));
  for (bool same : {true, false}) {
    VerifyResult r = VerifyEdited([&](json& b) {
      json& sigs = b["dsseEnvelope"]["signatures"];
      sigs.push_back(same ? sigs[0] : other["dsseEnvelope"]["signatures"][0]);
    });
    EXPECT_EQ(r.failure, VerifyFailure::kMalformedBundle) << r.message;
    EXPECT_NE(r.message.find("exactly one"), std::string::npos) << r.message;
  }
}

TEST_F(KeylessTest, V03BundleWithoutInclusionProofIsRefused) {
  // The signed entry timestamp still verifies: it is the log's promise, not a proof.
  VerifyResult r = VerifyEdited([&](json& b) { Entry(b).erase("inclusionProof"); });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("no inclusion proof"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, InclusionProofWithoutCheckpointIsRefused) {
  VerifyResult r = VerifyEdited([&](json& b) { Entry(b)["inclusionProof"].erase("checkpoint"); });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("checkpoint"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, MalformedCheckpointNoteIsRefused) {
  // The signature line without its em dash, and a checkpoint body with a blank line inside.
  std::vector<std::function<std::string(std::string)>> edits = {
      [](std::string cp) { return ReplaceOnce(cp, "\xe2\x80\x94 ", "- "); },
      [](std::string cp) { return ReplaceOnce(cp, "\n", "\n\n"); },
      [](std::string cp) { return cp.substr(0, cp.size() - 1); },  // no final newline
  };
  for (std::size_t i = 0; i < edits.size(); ++i) {
    VerifyResult r = VerifyEdited([&](json& b) {
      std::string cp = Entry(b)["inclusionProof"]["checkpoint"]["envelope"];
      Entry(b)["inclusionProof"]["checkpoint"]["envelope"] = edits[i](cp);
    });
    EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << i << ": " << r.message;
    EXPECT_NE(r.message.find("checkpoint"), std::string::npos) << i << ": " << r.message;
  }
}

// The Rekor body is parsed by the same strict rules, before its proof is checked.
class RekorBodyTest : public KeylessTest {
 protected:
  VerifyResult VerifyWithBody(const std::function<std::string(const std::string&)>& edit) {
    return VerifyEdited([&](json& b) {
      std::string body = *internal::Base64Decode(Entry(b)["canonicalizedBody"].get<std::string>());
      Entry(b)["canonicalizedBody"] = internal::Base64Encode(edit(body));
    });
  }
};

TEST_F(RekorBodyTest, SecondSignatureInTheEntryIsRefused) {
  VerifyResult r = VerifyWithBody([](const std::string& text) {
    json body = json::parse(text);
    body["spec"]["signatures"].push_back(body["spec"]["signatures"][0]);
    return body.dump();
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("exactly one"), std::string::npos) << r.message;
}

TEST_F(RekorBodyTest, DuplicateKeyInTheEntryIsRefused) {
  VerifyResult r = VerifyWithBody([](const std::string& text) {
    return ReplaceOnce(text, "{\"apiVersion\":\"0.0.1\"",
                       "{\"apiVersion\":\"0.0.1\",\"apiVersion\":\"0.0.1\"");
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("duplicate key"), std::string::npos) << r.message;
}

TEST_F(RekorBodyTest, VerifierWithAnExtraCertificateIsRefused) {
  VerifyResult r = VerifyWithBody([](const std::string& text) {
    json body = json::parse(text);
    json& sig = body["spec"]["signatures"][0];
    std::string pem = *internal::Base64Decode(sig["verifier"].get<std::string>());
    sig["verifier"] = internal::Base64Encode(pem + pem);
    return body.dump();
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("exactly the bundle's certificate"), std::string::npos) << r.message;
}

TEST_F(RekorBodyTest, UnknownSpecMemberIsRefused) {
  VerifyResult r = VerifyWithBody([](const std::string& text) {
    json body = json::parse(text);
    body["spec"]["proposedContent"] = json::object();
    return body.dump();
  });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("unknown member"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, PayloadTypeOtherThanInTotoIsRefused) {
  VerifyResult r =
      VerifyEdited([](json& b) { b["dsseEnvelope"]["payloadType"] = "application/json"; });
  EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << r.message;
  EXPECT_NE(r.message.find("payload type"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, MediaTypeOtherThanV03IsRefused) {
  // v0.1 and v0.2 carry x509CertificateChain and (v0.1) no inclusion proof: other rules, not
  // these; a bundle without a media type has no rules at all.
  for (const char* media_type : {"application/vnd.dev.sigstore.bundle+json;version=0.1",
                                 "application/vnd.dev.sigstore.bundle+json;version=0.2",
                                 "application/vnd.dev.sigstore.bundle.v0.4+json", ""}) {
    VerifyResult r = VerifyEdited([&](json& b) {
      if (*media_type)
        b["mediaType"] = media_type;
      else
        b.erase("mediaType");
    });
    EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << media_type << ": " << r.message;
  }
}

TEST_F(KeylessTest, V03UnderItsParameterSpellingVerifiesWithTheSameRules) {
  // Written by some signers for the same v0.3 bundle; must verify, and must not relax v0.3's
  // rules (an entry without its inclusion proof is still refused).
  VerifyResult ok = VerifyEdited(
      [](json& b) { b["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.3"; });
  EXPECT_EQ(ok.failure, VerifyFailure::kNone) << ok.message;
  VerifyResult no_proof = VerifyEdited([&](json& b) {
    b["mediaType"] = "application/vnd.dev.sigstore.bundle+json;version=0.3";
    Entry(b).erase("inclusionProof");
  });
  EXPECT_NE(no_proof.failure, VerifyFailure::kNone) << no_proof.message;
  for (const char* near_miss : {"application/vnd.dev.sigstore.bundle+json;version=0.30",
                                "application/vnd.dev.sigstore.bundle+json; version=0.3",
                                "APPLICATION/vnd.dev.sigstore.bundle+json;version=0.3"}) {
    VerifyResult r = VerifyEdited([&](json& b) { b["mediaType"] = near_miss; });
    EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << near_miss << ": " << r.message;
  }
}

TEST_F(KeylessTest, LogEntryOfAnotherKindIsRefused) {
  VerifyResult r = VerifyEdited([&](json& b) { Entry(b)["kindVersion"]["kind"] = "hashedrekord"; });
  EXPECT_EQ(r.failure, VerifyFailure::kUnsupported) << r.message;
}

TEST_F(KeylessTest, SignedEntryTimestampWithoutIntegratedTimeIsRefused) {
  VerifyResult r = VerifyEdited([&](json& b) { Entry(b).erase("integratedTime"); });
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedLogEntry) << r.message;
  EXPECT_NE(r.message.find("integrated time"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, TheEmbeddedSctIsVerifiedAgainstTheTrustConfigsCtLogs) {
  VerifyResult r = Verify("v1.0.0", Options("v1.0.0"));
  ASSERT_TRUE(r.verified) << r.message;
  std::string checks;
  for (const auto& c : r.checks) checks += c + "\n";
  EXPECT_NE(checks.find("SCT from CT log dd3d306a"), std::string::npos) << checks;
}

TEST_F(KeylessTest, SctThatDoesNotVerifyWithTheCtLogKeyIsRefused) {
  // The 2022 CT log's id with another key (the Rekor key): the SCT's signature cannot verify.
  json trust = json::parse(ReadText(trust_config_));
  json& root = trust["trustedRoot"];
  for (auto& ct : root["ctlogs"])
    ct["publicKey"]["rawBytes"] = root["tlogs"][0]["publicKey"]["rawBytes"];
  VerifyResult r = VerifyEdited([](json&) {}, trust.dump());
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("certificate transparency"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, SctFromACtLogNotValidAtItsTimeIsRefused) {
  json trust = json::parse(ReadText(trust_config_));
  for (auto& ct : trust["trustedRoot"]["ctlogs"])
    ct["publicKey"]["validFor"]["end"] = "2023-01-01T00:00:00Z";
  VerifyResult r = VerifyEdited([](json&) {}, trust.dump());
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("certificate transparency"), std::string::npos) << r.message;
}

TEST_F(KeylessTest, TrustConfigWithoutCtLogsSaysTheSctWasNotChecked) {
  json trust = json::parse(ReadText(trust_config_));
  trust["trustedRoot"].erase("ctlogs");
  VerifyResult r = VerifyEdited([](json&) {}, trust.dump());
  ASSERT_TRUE(r.verified) << r.message;
  std::string checks;
  for (const auto& c : r.checks) checks += c + "\n";
  EXPECT_NE(checks.find("SCT not checked"), std::string::npos) << checks;
}

TEST_F(KeylessTest, TrustConfigWithADuplicateKeyOrASloppyDateIsRefused) {
  std::string text = json::parse(ReadText(trust_config_)).dump();
  std::string dup = ReplaceOnce(text, "\"tlogs\":[", "\"tlogs\":[],\"tlogs\":[");
  auto r = internal::ParseTrustedRoot(dup);
  ASSERT_FALSE(r.has_value());
  EXPECT_NE(r.error().message().find("duplicate key \"tlogs\""), std::string::npos)
      << r.error().message();
  std::string sloppy =
      ReplaceOnce(text, "\"2021-01-12T11:53:27.000Z\"", "\"2021-01-12T11:53:27.000Z+junk\"");
  EXPECT_FALSE(internal::ParseTrustedRoot(sloppy).has_value());
  EXPECT_TRUE(internal::ParseTrustedRoot(text).has_value());  // the control
}

TEST_F(KeylessTest, VerifyCliChecksIdentityAndExitCodes) {
  auto run = [](const std::string& args) {
    std::string cmd = std::string(AIRLOCK_EXE) + " verify " + args + " >/dev/null 2>&1";
    int status = std::system(cmd.c_str());
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  std::string model = (tests_ / "v1.0.0-sigstore").string();
  std::string trust = " --trust-config " + trust_config_.string();
  EXPECT_EQ(run(model + trust + " --identity " + kIdentity + " --identity-provider " + kIssuer), 0);
  EXPECT_EQ(run(model + trust + " --identity eve@example.com --identity-provider " + kIssuer), 1);
  EXPECT_EQ(run(model + trust + " --identity " + kIdentity), 3);  // issuer missing: usage
  EXPECT_EQ(run(model + " --identity " + kIdentity + " --identity-provider " + kIssuer), 3);
}

// A keyless bundle built here end to end (own "Fulcio" CA, own "Rekor" log key), so that the
// integrated time can be moved and the signed entry timestamp re-signed: the certificate must be
// valid at the logged time, not merely at some time.
class SyntheticKeylessTest : public ::testing::Test {
 protected:
  static constexpr std::time_t kNotBefore = 1750000000;  // 2025-06-15
  static constexpr char kEmail[] = "dev@example.com";
  static constexpr char kOidcIssuer[] = "https://issuer.example";

  void SetUp() override {
    ca_key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    leaf_key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    log_key_ = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
    ca_ = MakeCert(ca_key_, ca_key_, nullptr, true, kNotBefore - 86400, kNotBefore + 86400 * 365);
    leaf_ = MakeCert(leaf_key_, ca_key_, ca_, false, kNotBefore, kNotBefore + 600);
  }
  void TearDown() override {
    X509_free(ca_);
    X509_free(leaf_);
    EVP_PKEY_free(ca_key_);
    EVP_PKEY_free(leaf_key_);
    EVP_PKEY_free(log_key_);
  }

  static void AddExt(X509* cert, X509* issuer, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, nullptr, nullptr, 0);
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
  }

  // What a test changes in the Fulcio-like leaf.
  struct LeafShape {
    bool code_signing = true;   // ExtendedKeyUsage codeSigning
    bool ca = false;            // basicConstraints CA:TRUE on the leaf
    int issuer_extensions = 1;  // copies of the 1.3.6.1.4.1.57264.1.8 extension
    std::string issuer_der;     // its content; empty: a UTF8String of kOidcIssuer
    std::string legacy_issuer;  // the raw 1.3.6.1.4.1.57264.1.1 extension; empty: none
  };

  static void AddRawExt(X509* cert, const char* oid_text, const std::string& content) {
    ASN1_OBJECT* oid = OBJ_txt2obj(oid_text, 1);
    ASN1_OCTET_STRING* data = ASN1_OCTET_STRING_new();
    ASN1_OCTET_STRING_set(data, reinterpret_cast<const unsigned char*>(content.data()),
                          static_cast<int>(content.size()));
    X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, oid, 0, data);
    X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    ASN1_OCTET_STRING_free(data);
    ASN1_OBJECT_free(oid);
  }

  static X509* MakeCert(EVP_PKEY* key, EVP_PKEY* signer, X509* issuer, bool ca, std::time_t from,
                        std::time_t until) {
    return MakeCert(key, signer, issuer, ca, from, until, LeafShape());
  }
  static X509* MakeCert(EVP_PKEY* key, EVP_PKEY* signer, X509* issuer, bool ca, std::time_t from,
                        std::time_t until, const LeafShape& shape) {
    X509* cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), ca ? 1 : 2);
    X509_time_adj_ex(X509_getm_notBefore(cert), 0, 0, &from);
    X509_time_adj_ex(X509_getm_notAfter(cert), 0, 0, &until);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    if (ca)  // Fulcio leaves have an empty subject; the identity is in the SAN
      X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC,
                                 reinterpret_cast<const unsigned char*>("test-fulcio"), -1, -1, 0);
    X509_set_issuer_name(cert, issuer ? X509_get_subject_name(issuer) : name);
    if (ca) {
      AddExt(cert, nullptr, NID_basic_constraints, "critical,CA:TRUE");
      AddExt(cert, nullptr, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
      AddExt(cert, issuer, NID_key_usage, "critical,digitalSignature");
      AddExt(cert, issuer, NID_ext_key_usage, shape.code_signing ? "codeSigning" : "serverAuth");
      if (shape.ca) AddExt(cert, issuer, NID_basic_constraints, "critical,CA:TRUE");
      AddExt(cert, issuer, NID_subject_alt_name, (std::string("email:") + kEmail).c_str());
      // Fulcio's issuer extension (1.3.6.1.4.1.57264.1.8): a DER UTF8String.
      std::string issuer_der =
          std::string("\x0c", 1) + static_cast<char>(std::strlen(kOidcIssuer)) + kOidcIssuer;
      if (!shape.issuer_der.empty()) issuer_der = shape.issuer_der;
      for (int i = 0; i < shape.issuer_extensions; ++i)
        AddRawExt(cert, "1.3.6.1.4.1.57264.1.8", issuer_der);
      if (!shape.legacy_issuer.empty())
        AddRawExt(cert, "1.3.6.1.4.1.57264.1.1", shape.legacy_issuer);
    }
    X509_sign(cert, signer, EVP_sha256());
    return cert;
  }

  static std::string Der(X509* cert) {
    unsigned char* buf = nullptr;
    int n = i2d_X509(cert, &buf);
    std::string out(reinterpret_cast<char*>(buf), n);
    OPENSSL_free(buf);
    return out;
  }
  static std::string SpkiDer(EVP_PKEY* key) {
    unsigned char* buf = nullptr;
    int n = i2d_PUBKEY(key, &buf);
    std::string out(reinterpret_cast<char*>(buf), n);
    OPENSSL_free(buf);
    return out;
  }
  static std::string Pem(X509* cert) {
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, n);
    BIO_free(bio);
    return out;
  }
  static std::string Sign(EVP_PKEY* key, const std::string& message) {
    auto sig = internal::SignMessage(key, EVP_sha256(), message);
    return sig.has_value() ? *sig : std::string();
  }
  static std::string Sha256Raw(const std::string& s) {
    core::Digest256 d = core::Sha256Of(s);
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
  }

  std::string TrustRoot() const {
    json root = {
        {"mediaType", "application/vnd.dev.sigstore.trustedroot+json;version=0.1"},
        {"tlogs",
         {{{"baseUrl", "https://log.example"},
           {"hashAlgorithm", "SHA2_256"},
           {"publicKey",
            {{"rawBytes", internal::Base64Encode(SpkiDer(log_key_))},
             {"keyDetails", "PKIX_ECDSA_P256_SHA_256"},
             {"validFor", {{"start", "2021-01-01T00:00:00Z"}}}}},
           {"logId", {{"keyId", internal::Base64Encode(Sha256Raw(SpkiDer(log_key_)))}}}}}},
        {"certificateAuthorities",
         {{{"subject", {{"organization", "test-fulcio"}}},
           {"certChain", {{"certificates", {{{"rawBytes", internal::Base64Encode(Der(ca_))}}}}}},
           {"validFor", {{"start", "2021-01-01T00:00:00Z"}}}}}}};
    return root.dump();
  }

  // A bundle whose Rekor entry says it was integrated at `integrated_time`, with a valid SET,
  // a one-leaf inclusion proof and a checkpoint, all signed by the log key.
  std::string Bundle(std::int64_t integrated_time, bool legacy_pae = false) const {
    auto statement = MakeStatement("model", std::string(64, 'a'), kModelSigningPredicateType, "{}");
    std::string payload = statement.has_value() ? *statement : std::string();
    std::string sig = Sign(leaf_key_, legacy_pae ? PaeV02Compat(kInTotoPayloadType, payload)
                                                 : Pae(kInTotoPayloadType, payload));
    json body = {{"apiVersion", "0.0.1"},
                 {"kind", "dsse"},
                 {"spec",
                  {{"payloadHash",
                    {{"algorithm", "sha256"}, {"value", internal::HexEncode(Sha256Raw(payload))}}},
                   {"signatures",
                    {{{"signature", internal::Base64Encode(sig)},
                      {"verifier", internal::Base64Encode(Pem(leaf_))}}}}}}};
    std::string body_text = body.dump();
    std::string key_id = Sha256Raw(SpkiDer(log_key_));
    json set_payload = {{"body", internal::Base64Encode(body_text)},
                        {"integratedTime", integrated_time},
                        {"logID", internal::HexEncode(key_id)},
                        {"logIndex", 7}};
    std::string root_hash = Sha256Raw(std::string("\0", 1) + body_text);
    std::string note = "log.example - 1\n1\n" + internal::Base64Encode(root_hash) + "\n";
    std::string note_sig = key_id.substr(0, 4) + Sign(log_key_, note);
    std::string checkpoint =
        note + "\n\xe2\x80\x94 log.example " + internal::Base64Encode(note_sig) + "\n";
    json entry = {
        {"logIndex", "7"},
        {"logId", {{"keyId", internal::Base64Encode(key_id)}}},
        {"kindVersion", {{"kind", "dsse"}, {"version", "0.0.1"}}},
        {"integratedTime", std::to_string(integrated_time)},
        {"inclusionPromise",
         {{"signedEntryTimestamp", internal::Base64Encode(Sign(log_key_, set_payload.dump()))}}},
        {"inclusionProof",
         {{"logIndex", "0"},
          {"rootHash", internal::Base64Encode(root_hash)},
          {"treeSize", "1"},
          {"hashes", json::array()},
          {"checkpoint", {{"envelope", checkpoint}}}}},
        {"canonicalizedBody", internal::Base64Encode(body_text)}};
    json bundle = {{"mediaType", kBundleMediaType},
                   {"verificationMaterial",
                    {{"certificate", {{"rawBytes", internal::Base64Encode(Der(leaf_))}}},
                     {"tlogEntries", {entry}},
                     {"timestampVerificationData", json::object()}}},
                   {"dsseEnvelope",
                    {{"payload", internal::Base64Encode(payload)},
                     {"payloadType", kInTotoPayloadType},
                     {"signatures", {{{"sig", internal::Base64Encode(sig)}}}}}}};
    return bundle.dump();
  }

  VerifyResult VerifyAt(std::int64_t integrated_time, bool legacy_pae = false) {
    WriteText(tmp_.path() / "root.json", TrustRoot());
    TrustAnchor trust;
    trust.trust_config_path = (tmp_.path() / "root.json").string();
    trust.identity = kEmail;
    trust.identity_provider = kOidcIssuer;
    auto r = VerifyBundle(Bundle(integrated_time, legacy_pae), trust);
    EXPECT_TRUE(r.has_value()) << (r.has_value() ? "" : r.error().message());
    return r.has_value() ? r->result : VerifyResult{};
  }

  EVP_PKEY* ca_key_ = nullptr;
  EVP_PKEY* leaf_key_ = nullptr;
  EVP_PKEY* log_key_ = nullptr;
  X509* ca_ = nullptr;
  X509* leaf_ = nullptr;
  airlock::testing::TempDir tmp_{"synthetic"};
};

TEST_F(SyntheticKeylessTest, CertificateValidAtTheIntegratedTimeVerifies) {
  VerifyResult r = VerifyAt(kNotBefore + 60);
  EXPECT_TRUE(r.verified) << r.message;
  EXPECT_NE(r.signer.find(kEmail), std::string::npos) << r.signer;
}

TEST_F(SyntheticKeylessTest, CertificateExpiredAtTheIntegratedTimeFails) {
  // Logged an hour after the ten-minute certificate expired (SET re-signed: the log vouches for
  // this time), so the key may have signed after its certificate stopped vouching for it.
  VerifyResult r = VerifyAt(kNotBefore + 3600);
  EXPECT_FALSE(r.verified);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("expired"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, CertificateNotYetValidAtTheIntegratedTimeFails) {
  VerifyResult r = VerifyAt(kNotBefore - 60);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("not yet valid"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, LeafWithoutCodeSigningUsageIsRefused) {
  LeafShape shape;
  shape.code_signing = false;
  X509_free(leaf_);
  leaf_ = MakeCert(leaf_key_, ca_key_, ca_, false, kNotBefore, kNotBefore + 600, shape);
  VerifyResult r = VerifyAt(kNotBefore + 60);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("codeSigning"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, CaCertificateAsTheSigningLeafIsRefused) {
  LeafShape shape;
  shape.ca = true;
  X509_free(leaf_);
  leaf_ = MakeCert(leaf_key_, ca_key_, ca_, false, kNotBefore, kNotBefore + 600, shape);
  VerifyResult r = VerifyAt(kNotBefore + 60);
  EXPECT_EQ(r.failure, VerifyFailure::kUntrustedCertificate) << r.message;
  EXPECT_NE(r.message.find("CA certificate"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, DuplicatedIssuerExtensionIsRefused) {
  LeafShape shape;
  shape.issuer_extensions = 2;
  X509_free(leaf_);
  leaf_ = MakeCert(leaf_key_, ca_key_, ca_, false, kNotBefore, kNotBefore + 600, shape);
  VerifyResult r = VerifyAt(kNotBefore + 60);
  EXPECT_EQ(r.failure, VerifyFailure::kIdentityMismatch) << r.message;
  EXPECT_NE(r.message.find("issuer extension twice"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, DisagreeingLegacyIssuerExtensionIsRefused) {
  // The new extension names the expected issuer; the deprecated one another: a verifier reading
  // only the old one would see another identity provider.
  LeafShape shape;
  shape.legacy_issuer = "https://accounts.example.net";
  X509_free(leaf_);
  leaf_ = MakeCert(leaf_key_, ca_key_, ca_, false, kNotBefore, kNotBefore + 600, shape);
  VerifyResult r = VerifyAt(kNotBefore + 60);
  EXPECT_EQ(r.failure, VerifyFailure::kIdentityMismatch) << r.message;
  EXPECT_NE(r.message.find("disagree"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, MalformedIssuerExtensionDoesNotFallBackToTheLegacyOne) {
  LeafShape shape;
  shape.issuer_der = std::string("\x0c\x7f", 2) + kOidcIssuer;  // a length past the end
  shape.legacy_issuer = kOidcIssuer;
  X509_free(leaf_);
  leaf_ = MakeCert(leaf_key_, ca_key_, ca_, false, kNotBefore, kNotBefore + 600, shape);
  VerifyResult r = VerifyAt(kNotBefore + 60);
  EXPECT_EQ(r.failure, VerifyFailure::kIdentityMismatch) << r.message;
  EXPECT_NE(r.message.find("not a UTF8String"), std::string::npos) << r.message;
}

TEST_F(SyntheticKeylessTest, KeylessSignatureOverTheLegacyV02PaeIsRefused) {
  // model_signing v0.2's mis-built PAE is accepted for its key and certificate bundles only.
  VerifyResult r = VerifyAt(kNotBefore + 60, /*legacy_pae=*/true);
  EXPECT_EQ(r.failure, VerifyFailure::kBadSignature) << r.message;
}

// RFC 9162 inclusion proofs on a 7-leaf tree, built here the slow way.
TEST(InclusionProofTest, EveryLeafOfASmallTreeVerifiesAndNothingElseDoes) {
  auto h = [](const std::string& s) {
    core::Digest256 d = core::Sha256Of(s);
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
  };
  auto leaf = [&](int i) { return h(std::string("\0", 1) + "leaf" + std::to_string(i)); };
  // MTH(D[n]) per RFC 9162 2.1.1, and PATH(m, D[n]) per 2.1.3.1.
  std::function<std::string(int, int)> mth = [&](int lo, int n) -> std::string {
    if (n == 1) return leaf(lo);
    int k = 1;
    while (k * 2 < n) k *= 2;
    return h(std::string("\x01", 1) + mth(lo, k) + mth(lo + k, n - k));
  };
  std::function<std::vector<std::string>(int, int, int)> path = [&](int m, int lo, int n) {
    std::vector<std::string> out;
    if (n == 1) return out;
    int k = 1;
    while (k * 2 < n) k *= 2;
    if (m < k) {
      out = path(m, lo, k);
      out.push_back(mth(lo + k, n - k));
    } else {
      out = path(m - k, lo + k, n - k);
      out.push_back(mth(lo, k));
    }
    return out;
  };
  for (int n = 1; n <= 7; ++n) {
    std::string root = mth(0, n);
    for (int m = 0; m < n; ++m) {
      auto p = path(m, 0, n);
      EXPECT_TRUE(internal::VerifyInclusionProof(leaf(m), m, n, p, root)) << n << " " << m;
      if (n > 1) {
        EXPECT_FALSE(internal::VerifyInclusionProof(leaf(m), (m + 1) % n, n, p, root));
        EXPECT_FALSE(internal::VerifyInclusionProof(leaf((m + 1) % n), m, n, p, root));
        auto shorter = p;
        shorter.pop_back();
        EXPECT_FALSE(internal::VerifyInclusionProof(leaf(m), m, n, shorter, root));
      }
      // An index outside the tree never verifies. (A proof for a leaf of a complete left
      // subtree has the same shape in a slightly larger tree: the checkpoint binds the size.)
      EXPECT_FALSE(internal::VerifyInclusionProof(leaf(m), m, m, p, root)) << n << " " << m;
    }
  }
  EXPECT_FALSE(internal::VerifyInclusionProof(leaf(0), 0, 0, {}, leaf(0)));
  EXPECT_FALSE(internal::VerifyInclusionProof(leaf(0), -1, 1, {}, leaf(0)));
}

TEST(TrustedRootTest, RejectsConfigsWithoutLogsOrAuthorities) {
  EXPECT_FALSE(internal::ParseTrustedRoot("{}").has_value());
  EXPECT_FALSE(internal::ParseTrustedRoot("not json").has_value());
  EXPECT_FALSE(internal::ParseTrustedRoot(R"({"tlogs": [{"publicKey": {"rawBytes": "AAAA"}}]})")
                   .has_value());
}

}  // namespace
}  // namespace airlock::sign
