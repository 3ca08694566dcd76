#include "audit/note.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstring>

#include "core/hash.h"

namespace airlock::audit {
namespace {

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using Pkey = std::unique_ptr<EVP_PKEY, PkeyFree>;

bool Ed25519Verify(const Ed25519PublicKey& key, std::string_view message, std::string_view sig) {
  if (sig.size() != 64) return false;
  Pkey pkey(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  if (!pkey) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok =
      ctx && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pkey.get()) == 1 &&
      EVP_DigestVerify(ctx, reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return ok;
}

bool RawPublicKey(EVP_PKEY* key, Ed25519PublicKey& out) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_ED25519) return false;
  std::size_t len = out.size();
  return EVP_PKEY_get_raw_public_key(key, out.data(), &len) == 1 && len == out.size();
}

Result<std::string> ReadSmallFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NotFound("audit: cannot open " + path);
  std::string data;
  char buf[4096];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      ::close(fd);
      return IoError("audit: read failed at " + path);
    }
    if (n == 0) break;
    data.append(buf, static_cast<std::size_t>(n));
    if (data.size() > (64 << 10)) {
      ::close(fd);
      return InvalidArgument("audit: key file too large at " + path);
    }
  }
  ::close(fd);
  return data;
}

Status WriteNewFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return IoError("audit: cannot create " + path + " (exists?)");
  bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  return ok ? Status::Ok() : IoError("audit: write failed at " + path);
}

std::string PemOf(EVP_PKEY* key, bool private_key) {
  BIO* bio = BIO_new(BIO_s_mem());
  std::string out;
  int ok = !bio          ? 0
           : private_key ? PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr)
                         : PEM_write_bio_PUBKEY(bio, key);
  if (ok == 1) {
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    if (n > 0) out.assign(data, static_cast<std::size_t>(n));
  }
  BIO_free(bio);
  return out;
}

}  // namespace

std::uint32_t NoteKeyId(std::string_view name, std::uint8_t type, const Ed25519PublicKey& key) {
  core::Sha256 h;
  h.Update(name);
  h.Update("\n");
  h.Update(std::string_view(reinterpret_cast<const char*>(&type), 1));
  h.Update(std::string_view(reinterpret_cast<const char*>(key.data()), key.size()));
  Digest256 d = h.Finish();
  return (std::uint32_t{d[0]} << 24) | (std::uint32_t{d[1]} << 16) | (std::uint32_t{d[2]} << 8) |
         std::uint32_t{d[3]};
}

std::optional<std::string> Base64Decode(std::string_view text) {
  return core::Base64DecodeStrict(text);
}

std::string NoteVerifier::VerifierKey() const {
  char id[9];
  std::snprintf(id, sizeof id, "%08x", key_id());
  std::string material(1, static_cast<char>(type));
  material.append(reinterpret_cast<const char*>(key.data()), key.size());
  return name + "+" + id + "+" + Base64Encode(material);
}

Result<NoteVerifier> ParseVerifierKey(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ' || text.back() == '\r'))
    text.remove_suffix(1);
  while (!text.empty() && (text.front() == ' ' || text.front() == '\n')) text.remove_prefix(1);
  std::size_t p1 = text.find('+');
  std::size_t p2 = p1 == std::string_view::npos ? p1 : text.find('+', p1 + 1);
  if (p2 == std::string_view::npos)
    return InvalidArgument("verifier key: expected name+keyid+base64(key)");
  NoteVerifier v;
  v.name = std::string(text.substr(0, p1));
  if (!core::ValidNoteKeyName(v.name)) return InvalidArgument("verifier key: malformed name");
  std::string_view hex = text.substr(p1 + 1, p2 - p1 - 1);
  auto material = Base64Decode(text.substr(p2 + 1));
  if (!material || material->size() != 33 || ((*material)[0] != 0x01 && (*material)[0] != 0x04))
    return InvalidArgument("verifier key: not an Ed25519 key (type 0x01 or 0x04, 32 bytes)");
  v.type = static_cast<std::uint8_t>((*material)[0]);
  std::memcpy(v.key.data(), material->data() + 1, 32);
  char id[9];
  std::snprintf(id, sizeof id, "%08x", v.key_id());
  if (hex != id) return InvalidArgument("verifier key: key ID does not match name and key");
  return v;
}

Result<NoteVerifier> LoadNoteVerifier(const std::string& path) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  if (text.find("-----BEGIN") == std::string::npos) {
    auto v = ParseVerifierKey(text);
    if (!v) return InvalidArgument("audit: " + path + ": " + v.error().message());
    return v;
  }
  BIO* bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
  Pkey key(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  if (!key) {
    bio = BIO_new_mem_buf(text.data(), static_cast<int>(text.size()));
    key.reset(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
    BIO_free(bio);
  }
  NoteVerifier v;
  if (!key || !RawPublicKey(key.get(), v.key))
    return InvalidArgument("audit: " + path +
                           ": not an Ed25519 key (PEM) or verifier key; checkpoint keys are "
                           "Ed25519 (airlock audit keygen)");
  return v;
}

bool VerifyNoteSignature(const Note& note, const NoteSignature& sig, const NoteVerifier& verifier) {
  return verifier.type == 0x01 && sig.name == verifier.name && sig.key_id == verifier.key_id() &&
         Ed25519Verify(verifier.key, note.body, sig.signature);
}

const NoteSignature* FindValidSignature(const Note& note, const NoteVerifier& verifier) {
  for (const auto& s : note.signatures)
    if (VerifyNoteSignature(note, s, verifier)) return &s;
  return nullptr;
}

std::string CosignedMessage(std::string_view checkpoint_body, std::uint64_t timestamp_s) {
  return "cosignature/v1\ntime " + std::to_string(timestamp_s) + "\n" +
         std::string(checkpoint_body);
}

bool VerifyCosignature(const Note& note, const NoteSignature& sig, const NoteVerifier& witness) {
  if (witness.type != 0x04 || sig.name != witness.name || sig.key_id != witness.key_id() ||
      sig.signature.size() != 8 + 64)
    return false;
  std::uint64_t t = 0;
  for (int i = 0; i < 8; ++i) t = (t << 8) | static_cast<std::uint8_t>(sig.signature[i]);
  if (t > static_cast<std::uint64_t>(INT64_MAX)) return false;
  return Ed25519Verify(witness.key, CosignedMessage(note.body, t), sig.signature.substr(8));
}

struct NoteSigner::Key {
  Pkey pkey;
};

NoteSigner::NoteSigner(std::unique_ptr<Key> key, std::string name, const Ed25519PublicKey& pub)
    : key_(std::move(key)), name_(std::move(name)), public_key_(pub) {}
NoteSigner::~NoteSigner() = default;

Result<std::shared_ptr<NoteSigner>> NoteSigner::Load(const std::string& pem_path,
                                                     std::string name) {
  if (!core::ValidNoteKeyName(name))
    return InvalidArgument("audit: key name '" + name +
                           "' must be non-empty without spaces or '+'");
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(pem_path));
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  auto key = std::make_unique<Key>();
  key->pkey.reset(PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  Ed25519PublicKey pub{};
  if (!key->pkey || !RawPublicKey(key->pkey.get(), pub))
    return InvalidArgument("audit: signing key at " + pem_path +
                           ": not a PEM Ed25519 private key (create one with `airlock audit "
                           "keygen`)");
  return std::shared_ptr<NoteSigner>(new NoteSigner(std::move(key), std::move(name), pub));
}

namespace {
Result<std::string> Ed25519Sign(EVP_PKEY* key, std::string_view message) {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  std::string sig(64, '\0');
  std::size_t len = sig.size();
  bool ok =
      ctx && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key) == 1 &&
      EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1 &&
      len == 64;
  EVP_MD_CTX_free(ctx);
  if (!ok) return Internal("audit: Ed25519 signing failed");
  return sig;
}
}  // namespace

Result<NoteSignature> NoteSigner::Sign(std::string_view body) const {
  AIRLOCK_ASSIGN_OR_RETURN(std::string sig, Ed25519Sign(key_->pkey.get(), body));
  return NoteSignature{name_, NoteKeyId(name_, 0x01, public_key_), std::move(sig)};
}

Result<NoteSignature> NoteSigner::Cosign(std::string_view checkpoint_body,
                                         std::uint64_t timestamp_s) const {
  AIRLOCK_ASSIGN_OR_RETURN(
      std::string sig,
      Ed25519Sign(key_->pkey.get(), CosignedMessage(checkpoint_body, timestamp_s)));
  std::string ts(8, '\0');
  for (int i = 0; i < 8; ++i) ts[i] = static_cast<char>((timestamp_s >> (56 - 8 * i)) & 0xff);
  return NoteSignature{name_, NoteKeyId(name_, 0x04, public_key_), ts + sig};
}

Status GenerateEd25519Key(const std::string& path) {
  Pkey key(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  if (!key) return Internal("audit: Ed25519 key generation failed");
  std::string priv = PemOf(key.get(), true), pub = PemOf(key.get(), false);
  if (priv.empty() || pub.empty()) return Internal("audit: PEM encoding failed");
  const std::string pub_path = path + ".pub";
  if (::access(pub_path.c_str(), F_OK) == 0)
    return IoError("audit: cannot create " + pub_path + " (exists)");
  AIRLOCK_TRY(WriteNewFile(path, priv, 0600));
  return WriteNewFile(pub_path, pub, 0644);
}

}  // namespace airlock::audit
