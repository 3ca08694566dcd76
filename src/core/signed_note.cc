#include "core/signed_note.h"

#include <cstring>

#include "core/text.h"

namespace airlock::core {
namespace {

constexpr std::string_view kSigPrefix = "\xE2\x80\x94 ";  // U+2014 EM DASH, then a space

int Base64Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

// Text of a note: no control characters except newline, no NUL, ends with a newline.
bool ValidNoteText(std::string_view text) {
  for (unsigned char c : text)
    if ((c < 0x20 && c != '\n') || c == 0x7f) return false;
  return !text.empty() && text.back() == '\n';
}

std::string BigEndian32(std::uint32_t v) {
  std::string out(4, '\0');
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (24 - 8 * i)) & 0xff);
  return out;
}

}  // namespace

bool ValidNoteKeyName(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name)
    if (c <= 0x20 || c == 0x7f || c == '+') return false;
  return true;
}

std::optional<std::string> Base64DecodeStrict(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    std::uint32_t v = 0;
    for (int j = 0; j < 4; ++j) {
      int d = j >= 4 - pad ? 0 : Base64Value(text[i + j]);
      if (d < 0) return std::nullopt;
      v = (v << 6) | static_cast<std::uint32_t>(d);
    }
    out += static_cast<char>((v >> 16) & 0xff);
    if (pad < 2) out += static_cast<char>((v >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(v & 0xff);
    // Canonical encoding only: the bits the padding hides must be zero.
    if ((pad == 1 && (v & 0xff)) || (pad == 2 && (v & 0xffff))) return std::nullopt;
  }
  return out;
}

std::string CheckpointBody(const Checkpoint& c) {
  std::string body =
      c.origin + "\n" + std::to_string(c.size) + "\n" +
      Base64Encode(std::string_view(reinterpret_cast<const char*>(c.root.data()), c.root.size())) +
      "\n";
  for (const auto& e : c.extensions) body += e + "\n";
  return body;
}

Result<Checkpoint> ParseCheckpointBody(std::string_view body) {
  if (body.size() > kMaxNoteBytes || !ValidNoteText(body))
    return Corrupt("checkpoint: body is not newline-terminated text");
  std::vector<std::string_view> lines;
  for (std::size_t start = 0; start < body.size();) {
    std::size_t nl = body.find('\n', start);
    lines.push_back(body.substr(start, nl - start));
    start = nl + 1;
  }
  if (lines.size() < 3) return Corrupt("checkpoint: fewer than three lines");
  Checkpoint c;
  if (lines[0].empty()) return Corrupt("checkpoint: empty origin line");
  c.origin = std::string(lines[0]);
  std::string_view size = lines[1];
  if (size.empty() || size.size() > 20 || (size.size() > 1 && size[0] == '0'))
    return Corrupt("checkpoint: malformed tree size '" + std::string(size.substr(0, 24)) + "'");
  for (char ch : size) {
    if (ch < '0' || ch > '9')
      return Corrupt("checkpoint: malformed tree size '" + std::string(size.substr(0, 24)) + "'");
    std::uint64_t digit = static_cast<std::uint64_t>(ch - '0');
    if (c.size > (UINT64_MAX - digit) / 10) return Corrupt("checkpoint: tree size overflows");
    c.size = c.size * 10 + digit;
  }
  auto root = Base64DecodeStrict(lines[2]);
  if (!root || root->size() != 32)
    return Corrupt("checkpoint: root hash is not base64 of 32 bytes");
  std::memcpy(c.root.data(), root->data(), 32);
  for (std::size_t i = 3; i < lines.size(); ++i) {
    if (lines[i].empty()) return Corrupt("checkpoint: empty extension line");
    c.extensions.emplace_back(lines[i]);
  }
  return c;
}

Result<Note> ParseNote(std::string_view text) {
  if (text.size() > kMaxNoteBytes) return Corrupt("note: larger than 1 MiB");
  if (!ValidNoteText(text))
    return Corrupt("note: not newline-terminated text (control characters or no final newline)");
  std::size_t split = text.rfind("\n\n");
  if (split == std::string_view::npos) return Corrupt("note: no blank line before signatures");
  Note note;
  note.body = std::string(text.substr(0, split + 1));
  std::string_view sigs = text.substr(split + 2);
  if (sigs.empty()) return Corrupt("note: no signature lines");
  while (!sigs.empty()) {
    std::size_t nl = sigs.find('\n');
    std::string_view line = sigs.substr(0, nl);
    sigs.remove_prefix(nl + 1);
    if (line.substr(0, kSigPrefix.size()) != kSigPrefix)
      return Corrupt("note: signature line does not start with an em dash and a space");
    line.remove_prefix(kSigPrefix.size());
    std::size_t space = line.find(' ');
    if (space == std::string_view::npos) return Corrupt("note: signature line without a signature");
    std::string_view name = line.substr(0, space);
    if (!ValidNoteKeyName(name)) return Corrupt("note: malformed key name in a signature line");
    auto raw = Base64DecodeStrict(line.substr(space + 1));
    if (!raw || raw->size() < 5) return Corrupt("note: signature is not base64 of key ID + bytes");
    if (note.signatures.size() == kMaxNoteSignatures) return Corrupt("note: too many signatures");
    NoteSignature sig;
    sig.name = std::string(name);
    for (int i = 0; i < 4; ++i)
      sig.key_id =
          (sig.key_id << 8) | static_cast<std::uint8_t>((*raw)[static_cast<std::size_t>(i)]);
    sig.signature = raw->substr(4);
    note.signatures.push_back(std::move(sig));
  }
  return note;
}

Result<std::vector<Note>> ParseNotes(std::string_view text) {
  if (text.size() > 64 * kMaxNoteBytes) return Corrupt("notes: larger than 64 MiB");
  std::vector<Note> notes;
  // A note ends after its last signature line: the first line after a signature line that is not
  // itself a signature line starts the next note.
  std::size_t start = 0, pos = 0;
  bool in_signatures = false;
  while (pos < text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return Corrupt("notes: last line has no newline");
    std::string_view line = text.substr(pos, nl - pos);
    bool sig_line = line.substr(0, kSigPrefix.size()) == kSigPrefix;
    if (in_signatures && !sig_line) {
      AIRLOCK_ASSIGN_OR_RETURN(Note n, ParseNote(text.substr(start, pos - start)));
      notes.push_back(std::move(n));
      start = pos;
      in_signatures = false;
    }
    if (line.empty() && pos > start) in_signatures = true;
    pos = nl + 1;
  }
  if (start < text.size()) {
    AIRLOCK_ASSIGN_OR_RETURN(Note n, ParseNote(text.substr(start)));
    notes.push_back(std::move(n));
  }
  if (notes.empty()) return Corrupt("notes: no note found");
  return notes;
}

std::string FormatNote(const Note& note) {
  std::string out = note.body + "\n";
  for (const auto& s : note.signatures)
    out += std::string(kSigPrefix) + s.name + " " +
           Base64Encode(BigEndian32(s.key_id) + s.signature) + "\n";
  return out;
}

}  // namespace airlock::core
