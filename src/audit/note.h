// C2SP signed notes (c2sp.org/signed-note) carrying C2SP transparency-log checkpoints
// (c2sp.org/tlog-checkpoint), with Ed25519 keys, plus Ed25519 witness cosignatures
// (c2sp.org/tlog-cosignature, "cosignature/v1"). These are the byte formats Go's
// golang.org/x/mod/sumdb/note and the tlog witness ecosystem read, so a checkpoint Airlock prints
// can be checked with tools that know nothing about Airlock.
//
// A note is a body, a blank line and signature lines (core/signed_note.h parses the text). The key
// ID of an Ed25519 note key is the first 4 bytes (big-endian) of SHA-256(name || "\n" || 0x01 ||
// public key). A checkpoint body is the origin line, the tree size in decimal, the base64 root
// hash, and optional extension lines.
//
// Parsers here take hostile text (a checkpoint file, a witness request or response): they return
// errors as values, bound their work by the input size, and never throw.
// Thread-safety: values; NoteSigner is immutable after creation and may be shared.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "audit/merkle.h"
#include "core/signed_note.h"
#include "core/status.h"
#include "core/text.h"

namespace airlock::audit {

// The text layer (notes, checkpoints, strict base64) is core/signed_note.h, shared with the
// Sigstore verifier's Rekor checkpoints; the Ed25519 keys and signatures are here.
using core::Checkpoint;
using core::CheckpointBody;
using core::FormatNote;
using core::kMaxNoteBytes;
using core::kMaxNoteSignatures;
using core::Note;
using core::NoteSignature;
using core::ParseCheckpointBody;
using core::ParseNote;
using core::ParseNotes;

using core::Base64Encode;
// Strict RFC 4648 section 4 decoding (core::Base64DecodeStrict); nullopt when malformed.
std::optional<std::string> Base64Decode(std::string_view text);

using Ed25519PublicKey = std::array<std::uint8_t, 32>;

// Key ID per signed-note: SHA-256(name || "\n" || type || key)[:4], big-endian. type 0x01 is an
// Ed25519 note signature, 0x04 an Ed25519 cosignature/v1.
std::uint32_t NoteKeyId(std::string_view name, std::uint8_t type, const Ed25519PublicKey& key);

// Who may sign a note: a key name (for Airlock logs, the log's origin) and an Ed25519 public key.
struct NoteVerifier {
  std::string name;
  Ed25519PublicKey key{};
  std::uint8_t type = 0x01;  // 0x01 note signature, 0x04 cosignature/v1
  std::uint32_t key_id() const { return NoteKeyId(name, type, key); }
  // The verifier key string "name+hex(key ID)+base64(type || key)" (Go's note.NewVerifier format).
  std::string VerifierKey() const;
};

// Parses a verifier key string (whitespace around it is ignored). Errors: kInvalidArgument.
Result<NoteVerifier> ParseVerifierKey(std::string_view text);
// Reads a public key: PEM (SubjectPublicKeyInfo or a private key, Ed25519 only) or a verifier key
// string. A PEM key has no name: the returned name is empty and the caller supplies one.
// Errors: kNotFound, kIo, kInvalidArgument.
Result<NoteVerifier> LoadNoteVerifier(const std::string& path);

// True when `sig` is a valid signature of `note.body` by `verifier` (name and key ID must match).
bool VerifyNoteSignature(const Note& note, const NoteSignature& sig, const NoteVerifier& verifier);
// The first signature line of `note` made by `verifier`, or nullptr when none verifies.
const NoteSignature* FindValidSignature(const Note& note, const NoteVerifier& verifier);

// An Ed25519 private key used to sign notes under a name.
class NoteSigner {
 public:
  // Loads a PEM Ed25519 private key. Errors: kNotFound, kIo, kInvalidArgument (not Ed25519).
  static Result<std::shared_ptr<NoteSigner>> Load(const std::string& pem_path, std::string name);
  ~NoteSigner();
  NoteSigner(const NoteSigner&) = delete;
  NoteSigner& operator=(const NoteSigner&) = delete;

  const std::string& name() const { return name_; }
  const Ed25519PublicKey& public_key() const { return public_key_; }
  NoteVerifier Verifier(std::uint8_t type = 0x01) const { return {name_, public_key_, type}; }
  // A note signature over `body`. Errors: kInternal.
  Result<NoteSignature> Sign(std::string_view body) const;
  // A cosignature/v1 over `checkpoint_body` at `timestamp_s` (type 0x04 key ID). Errors: kInternal.
  Result<NoteSignature> Cosign(std::string_view checkpoint_body, std::uint64_t timestamp_s) const;

 private:
  struct Key;
  NoteSigner(std::unique_ptr<Key> key, std::string name, const Ed25519PublicKey& pub);
  std::unique_ptr<Key> key_;
  std::string name_;
  Ed25519PublicKey public_key_{};
};

// The message a cosignature/v1 signs: "cosignature/v1\ntime <t>\n" + checkpoint body.
std::string CosignedMessage(std::string_view checkpoint_body, std::uint64_t timestamp_s);
// True when `sig` is a valid cosignature/v1 of `note.body` by `witness` (type 0x04).
bool VerifyCosignature(const Note& note, const NoteSignature& sig, const NoteVerifier& witness);

// Writes a fresh Ed25519 private key (PEM PKCS#8, mode 0600) to `path` and its public key (PEM) to
// `path` + ".pub" (mode 0644). Refuses to overwrite either. Errors: kIo, kInternal.
Status GenerateEd25519Key(const std::string& path);

}  // namespace airlock::audit
