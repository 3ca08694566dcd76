// C2SP signed notes and checkpoints: byte format, strict parsing of hostile text, verifier keys,
// and an independent cross-check of the Ed25519 signature and key ID with the openssl CLI.
#include "audit/note.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "core/hash.h"
#include "test_util.h"

namespace airlock::audit {
namespace {

using airlock::testing::ReadFileText;

using airlock::testing::TempDir;

TEST(Base64, RoundTripsAndRejectsNonCanonicalText) {
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar"}) {
    auto d = Base64Decode(Base64Encode(s));
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(*d, s);
  }
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");  // RFC 4648 section 10
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  for (const char* bad : {"Zm8", "Zm9=", "Zg==Zg==", "Z===", "Zm 8=", "Zm8=\n", "Zh==", "@@@@"})
    EXPECT_FALSE(Base64Decode(bad).has_value()) << bad;
}

Checkpoint Sample() {
  Checkpoint c;
  c.origin = "example.test/airlock-audit";
  c.size = 42;
  c.root = core::Sha256Of(std::string_view("root"));
  return c;
}

TEST(Checkpoint, BodyIsOriginSizeAndBase64Root) {
  Checkpoint c = Sample();
  std::string body = CheckpointBody(c);
  std::string root64 =
      Base64Encode(std::string_view(reinterpret_cast<const char*>(c.root.data()), 32));
  EXPECT_EQ(body, "example.test/airlock-audit\n42\n" + root64 + "\n");
  auto parsed = ParseCheckpointBody(body);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->origin, c.origin);
  EXPECT_EQ(parsed->size, 42u);
  EXPECT_EQ(parsed->root, c.root);
  // Extension lines are kept; malformed sizes and roots are refused.
  EXPECT_EQ(ParseCheckpointBody(body + "ext\n")->extensions.size(), 1u);
  for (std::string bad :
       {std::string("o\n042\n") + root64 + "\n", std::string("o\n-1\n") + root64 + "\n",
        std::string("o\n18446744073709551616\n") + root64 + "\n", std::string("o\n1\nAAAA\n"),
        std::string("\n1\n") + root64 + "\n", std::string("o\n1\n") + root64,
        std::string("o\n1\n") + root64 + "\n\n"})
    EXPECT_FALSE(ParseCheckpointBody(bad).ok()) << bad;
}

class NoteKeys : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = dir_.path() / "log.pem";
    ASSERT_TRUE(GenerateEd25519Key(key_.string()).ok());
    auto s = NoteSigner::Load(key_.string(), "example.test/airlock-audit");
    ASSERT_TRUE(s.ok()) << s.error().message();
    signer_ = *s;
  }
  TempDir dir_{"note"};
  std::filesystem::path key_;
  std::shared_ptr<NoteSigner> signer_;
};

TEST_F(NoteKeys, KeygenWritesBothHalvesAndRefusesToOverwrite) {
  EXPECT_TRUE(std::filesystem::exists(key_.string() + ".pub"));
  EXPECT_NE(ReadFileText(key_.string() + ".pub").find("BEGIN PUBLIC KEY"), std::string::npos);
  EXPECT_EQ(ReadFileText(key_.string() + ".pub").find("PRIVATE"), std::string::npos);
  EXPECT_FALSE(GenerateEd25519Key(key_.string()).ok());
  auto pem = LoadNoteVerifier(key_.string() + ".pub");
  ASSERT_TRUE(pem.ok());
  EXPECT_EQ(pem->key, signer_->public_key());
}

TEST_F(NoteKeys, SignedNoteFormatAndVerification) {
  Note note;
  note.body = CheckpointBody(Sample());
  auto sig = signer_->Sign(note.body);
  ASSERT_TRUE(sig.ok());
  note.signatures.push_back(*sig);
  std::string text = FormatNote(note);
  // body, blank line, "— name base64(keyid || sig)\n" (U+2014 as UTF-8).
  std::string expected_prefix = note.body + "\n\xE2\x80\x94 example.test/airlock-audit ";
  ASSERT_EQ(text.rfind(expected_prefix, 0), 0u) << text;
  EXPECT_EQ(
      Base64Decode(text.substr(expected_prefix.size(), text.size() - expected_prefix.size() - 1))
          ->size(),
      4u + 64u);
  auto parsed = ParseNote(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  NoteVerifier v = signer_->Verifier();
  EXPECT_NE(FindValidSignature(*parsed, v), nullptr);
  // Another name, another key, or a changed body: no valid signature.
  NoteVerifier other_name = v;
  other_name.name = "example.test/other";
  EXPECT_EQ(FindValidSignature(*parsed, other_name), nullptr);
  Note changed = *parsed;
  changed.body[changed.body.size() - 3] ^= 1;
  EXPECT_EQ(FindValidSignature(changed, v), nullptr);
}

TEST_F(NoteKeys, VerifierKeyRoundTripsAndIsChecked) {
  NoteVerifier v = signer_->Verifier();
  std::string vkey = v.VerifierKey();
  auto parsed = ParseVerifierKey(vkey + "\n");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message();
  EXPECT_EQ(parsed->name, v.name);
  EXPECT_EQ(parsed->key, v.key);
  EXPECT_EQ(parsed->key_id(), v.key_id());
  std::string wrong_id = vkey;
  wrong_id[v.name.size() + 1] = wrong_id[v.name.size() + 1] == '0' ? '1' : '0';
  EXPECT_FALSE(ParseVerifierKey(wrong_id).ok());
  EXPECT_FALSE(ParseVerifierKey("name+00000000+AAAA").ok());
  EXPECT_FALSE(ParseVerifierKey("no-plus-signs").ok());
}

// Independent check: the openssl CLI verifies our signature over the note body with the .pub file,
// and computes the same key ID from the raw public key it extracts itself.
TEST_F(NoteKeys, OpensslVerifiesTheNoteSignatureAndKeyId) {
  if (std::system("openssl version >/dev/null 2>&1") != 0) GTEST_SKIP() << "no openssl CLI";
  Note note;
  note.body = CheckpointBody(Sample());
  auto sig = signer_->Sign(note.body);
  ASSERT_TRUE(sig.ok());
  auto body = dir_.path() / "body", sigf = dir_.path() / "sig", der = dir_.path() / "pub.der";
  std::ofstream(body, std::ios::binary) << note.body;
  std::ofstream(sigf, std::ios::binary) << sig->signature;
  const std::string pub = key_.string() + ".pub";
  EXPECT_EQ(std::system(("openssl pkeyutl -verify -pubin -inkey " + pub + " -rawin -in " +
                         body.string() + " -sigfile " + sigf.string() + " >/dev/null")
                            .c_str()),
            0);
  std::ofstream(body, std::ios::binary | std::ios::app) << "tampered\n";
  EXPECT_NE(std::system(("openssl pkeyutl -verify -pubin -inkey " + pub + " -rawin -in " +
                         body.string() + " -sigfile " + sigf.string() + " >/dev/null 2>&1")
                            .c_str()),
            0);
  // Key ID = SHA-256(name || "\n" || 0x01 || raw key)[:4], the raw key being the last 32 bytes of
  // the DER SubjectPublicKeyInfo.
  ASSERT_EQ(std::system(
                ("openssl pkey -pubin -in " + pub + " -outform DER -out " + der.string()).c_str()),
            0);
  std::string spki = ReadFileText(der);
  ASSERT_EQ(spki.size(), 44u);
  auto idin = dir_.path() / "idin", idout = dir_.path() / "idout";
  std::ofstream(idin, std::ios::binary) << "example.test/airlock-audit\n\x01" << spki.substr(12);
  ASSERT_EQ(
      std::system(
          ("openssl dgst -sha256 -binary -out " + idout.string() + " " + idin.string()).c_str()),
      0);
  std::string digest = ReadFileText(idout);
  ASSERT_EQ(digest.size(), 32u);
  std::uint32_t id = 0;
  for (int i = 0; i < 4; ++i) id = (id << 8) | static_cast<std::uint8_t>(digest[i]);
  EXPECT_EQ(sig->key_id, id);
}

TEST_F(NoteKeys, CosignatureV1VerifiesAndBindsTheTimestamp) {
  Note note;
  note.body = CheckpointBody(Sample());
  auto cosig = signer_->Cosign(note.body, 1700000000);
  ASSERT_TRUE(cosig.ok());
  EXPECT_EQ(cosig->signature.size(), 72u);
  NoteVerifier w = signer_->Verifier(0x04);
  EXPECT_TRUE(VerifyCosignature(note, *cosig, w));
  EXPECT_FALSE(
      VerifyNoteSignature(note, *cosig, signer_->Verifier()));  // type 0x04, not a note sig
  NoteSignature moved = *cosig;
  moved.signature[7] ^= 1;  // another timestamp
  EXPECT_FALSE(VerifyCosignature(note, moved, w));
  EXPECT_EQ(CosignedMessage("b\n", 5), "cosignature/v1\ntime 5\nb\n");
}

TEST(Note, RejectsMalformedText) {
  const std::string sig = "\xE2\x80\x94 name AAAAAAAAAAAAAAA=\n";  // 11 bytes: key ID + 7
  EXPECT_TRUE(ParseNote("body\n\n" + sig).ok());
  for (std::string bad : std::vector<std::string>{
           std::string("body\n\n"), std::string("body\n") + sig,
           "body\n\n" + sig.substr(0, sig.size() - 1), "body\n\n- name AAAA\n",
           "body\n\n\xE2\x80\x94 name\n", "body\n\n\xE2\x80\x94 na+me AAAAAAA=\n",
           "bo\rdy\n\n" + sig, std::string("bo\0dy\n\n", 8) + sig,
           "body\n\n\xE2\x80\x94 name AAAA\n"})
    EXPECT_FALSE(ParseNote(bad).ok()) << bad;
  std::string many = "body\n\n";
  for (std::size_t i = 0; i <= kMaxNoteSignatures; ++i) many += sig;
  EXPECT_FALSE(ParseNote(many).ok());
}

TEST(Note, ParsesNotesWrittenOneAfterAnother) {
  const std::string sig = "\xE2\x80\x94 name AAAAAAAAAAAAAAA=\n";
  std::string two = "a\n1\n\n" + sig + sig + "b\n2\n\n" + sig;
  auto notes = ParseNotes(two);
  ASSERT_TRUE(notes.ok()) << notes.error().message();
  ASSERT_EQ(notes->size(), 2u);
  EXPECT_EQ((*notes)[0].body, "a\n1\n");
  EXPECT_EQ((*notes)[0].signatures.size(), 2u);
  EXPECT_EQ((*notes)[1].body, "b\n2\n");
  EXPECT_FALSE(ParseNotes("").ok());
  EXPECT_FALSE(ParseNotes("a\n1\n\n" + sig + "b\n2\n").ok());  // second note has no signatures
}

}  // namespace
}  // namespace airlock::audit
