// C2SP signed notes (c2sp.org/signed-note) and transparency-log checkpoints
// (c2sp.org/tlog-checkpoint) as text: the parse and the formatting, without any key. A note is a
// body (UTF-8 lines, each ending in "\n"), a blank line, and one or more signature lines
// "— <key name> <base64(4-byte key ID || signature)>\n". A checkpoint body is the origin line, the
// tree size in decimal, the base64 root hash, and optional extension lines.
//
// Two verifiers read these: audit (Airlock's own logs and witnesses, Ed25519 keys) and sign
// (Rekor's checkpoints in Sigstore bundles, ECDSA keys). Both take hostile text, so the parsers
// accept canonical forms only (strict base64, no leading zeros, no control characters), return
// errors as values, bound their work by the input size, and never throw.
// Thread-safety: pure functions on values.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/hash.h"
#include "core/status.h"

namespace airlock::core {

constexpr std::size_t kMaxNoteBytes = 1 << 20;  // larger notes are refused
constexpr std::size_t kMaxNoteSignatures = 100;

// Strict RFC 4648 section 4 decoding (padding required, no whitespace, canonical trailing bits);
// nullopt when malformed.
std::optional<std::string> Base64DecodeStrict(std::string_view text);

// A signed-note key name: non-empty, no whitespace, no '+', no control characters.
bool ValidNoteKeyName(std::string_view name);

struct Checkpoint {
  std::string origin;
  std::uint64_t size = 0;
  Digest256 root{};
  std::vector<std::string> extensions;  // extension lines, without their newline
};

// The note body of `c`: "origin\nsize\nbase64(root)\n" followed by its extension lines.
std::string CheckpointBody(const Checkpoint& c);
// Parses a checkpoint note body. Errors: kCorrupt naming what is malformed.
Result<Checkpoint> ParseCheckpointBody(std::string_view body);

struct NoteSignature {
  std::string name;
  std::uint32_t key_id = 0;  // the first 4 bytes after base64 decoding, big-endian
  std::string signature;     // the bytes after the key ID
};

struct Note {
  std::string body;  // including its final "\n", excluding the blank line
  std::vector<NoteSignature> signatures;
};

// Parses one signed note. Errors: kCorrupt naming what is malformed.
Result<Note> ParseNote(std::string_view text);
// Parses one or more notes written one after another (an anchor file). Errors: kCorrupt.
Result<std::vector<Note>> ParseNotes(std::string_view text);
// "— name base64\n" lines of `note` after its body and the blank line.
std::string FormatNote(const Note& note);

}  // namespace airlock::core
