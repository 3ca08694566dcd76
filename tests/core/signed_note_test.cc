// The signed-note text layer shared by audit (Airlock's checkpoints) and sign (Rekor's
// checkpoints in Sigstore bundles): canonical forms only, errors as values.
#include "core/signed_note.h"

#include <gtest/gtest.h>

#include <string>

#include "core/text.h"

namespace airlock::core {
namespace {

// Shaped like a Rekor checkpoint: origin with a tree id, size, root, an ECDSA signature whose
// first four bytes are the key hint.
const std::string kRoot = Base64Encode(std::string(32, '\x11'));
const std::string kSig = Base64Encode(std::string("\xc0\xd2\x3d\x6a", 4) + std::string(70, 'S'));
const std::string kNote = "rekor.sigstore.dev - 1193050959916656506\n84439920\n" + kRoot +
                          "\n\n\xe2\x80\x94 rekor.sigstore.dev " + kSig + "\n";

TEST(SignedNote, ParsesARekorShapedCheckpoint) {
  auto note = ParseNote(kNote);
  ASSERT_TRUE(note.has_value()) << note.error().message();
  ASSERT_EQ(note->signatures.size(), 1u);
  EXPECT_EQ(note->signatures[0].name, "rekor.sigstore.dev");
  EXPECT_EQ(note->signatures[0].key_id, 0xc0d23d6au);
  EXPECT_EQ(note->signatures[0].signature, std::string(70, 'S'));
  auto cp = ParseCheckpointBody(note->body);
  ASSERT_TRUE(cp.has_value()) << cp.error().message();
  EXPECT_EQ(cp->size, 84439920u);
  EXPECT_EQ(cp->origin, "rekor.sigstore.dev - 1193050959916656506");
  EXPECT_EQ(FormatNote(*note), kNote);  // canonical: formats back to the same bytes
}

TEST(SignedNote, NonCanonicalFormsAreRefused) {
  auto replace = [](std::string s, const std::string& from, const std::string& to) {
    return s.replace(s.find(from), from.size(), to);
  };
  // No final newline, a control character, a signature line without its em dash, a size with a
  // leading zero, a root that is not 32 bytes, base64 with non-zero padding bits.
  EXPECT_FALSE(ParseNote(kNote.substr(0, kNote.size() - 1)).has_value());
  EXPECT_FALSE(ParseNote(replace(kNote, "84439920", "8443\t9920")).has_value());
  EXPECT_FALSE(ParseNote(replace(kNote, "\xe2\x80\x94 ", "- ")).has_value());
  auto leading_zero = ParseNote(replace(kNote, "\n84439920\n", "\n084439920\n"));
  ASSERT_TRUE(leading_zero.has_value());
  EXPECT_FALSE(ParseCheckpointBody(leading_zero->body).has_value());
  auto short_root = ParseNote(replace(kNote, kRoot, Base64Encode(std::string(31, 'x'))));
  ASSERT_TRUE(short_root.has_value());
  EXPECT_FALSE(ParseCheckpointBody(short_root->body).has_value());
  EXPECT_TRUE(Base64DecodeStrict("QQ==").has_value());
  EXPECT_FALSE(Base64DecodeStrict("QR==").has_value());
  EXPECT_FALSE(Base64DecodeStrict("QQ").has_value());
  EXPECT_FALSE(Base64DecodeStrict("Q Q=").has_value());
}

TEST(SignedNote, SignatureLinesAreBounded) {
  std::string many = kNote;
  for (std::size_t i = 0; i < kMaxNoteSignatures; ++i)
    many += "\xe2\x80\x94 rekor.sigstore.dev " + kSig + "\n";
  EXPECT_FALSE(ParseNote(many).has_value());
}

}  // namespace
}  // namespace airlock::core
