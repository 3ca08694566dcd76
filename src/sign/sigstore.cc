#include "sign/internal/sigstore.h"

#include <openssl/ct.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/hash.h"
#include "core/signed_note.h"
#include "sign/internal/encoding.h"
#include "sign/internal/strict_json.h"

namespace airlock::sign::internal {
namespace {

using nlohmann::json;

constexpr std::size_t kMaxTrustConfigBytes = 4u << 20;

std::string Sha256Raw(std::string_view data) {
  core::Digest256 d = core::Sha256Of(data);
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

const json* Member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string StringMember(const json& obj, const char* key) {
  const json* v = Member(obj, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

// RFC 3339 "2021-01-12T11:53:27.000Z" (fractional seconds ignored) -> seconds since the epoch.
std::optional<std::time_t> ParseRfc3339(const std::string& text) {
  struct tm tm {};
  int consumed = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      consumed != 19)
    return std::nullopt;
  // Then optional fractional seconds and "Z" (UTC), nothing else.
  std::size_t i = 19;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (i >= text.size() || text[i] < '0' || text[i] > '9') return std::nullopt;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  }
  if (i + 1 != text.size() || text[i] != 'Z') return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return timegm(&tm);
}

Status ParseValidFor(const json& holder, std::time_t* from, std::time_t* until) {
  const json* vf = Member(holder, "validFor");
  if (!vf) return Status::Ok();
  if (!vf->is_object()) return InvalidArgument("sign: trust config: validFor is not an object");
  for (auto [key, out] : {std::pair{"start", from}, std::pair{"end", until}}) {
    std::string text = StringMember(*vf, key);
    if (text.empty()) continue;
    auto t = ParseRfc3339(text);
    if (!t) return InvalidArgument("sign: trust config: unreadable validFor." + std::string(key));
    *out = *t;
  }
  return Status::Ok();
}

bool ValidAt(std::time_t from, std::time_t until, std::time_t at) {
  return at >= from && (until == 0 || at <= until);
}

Result<std::vector<TrustedAuthority>> ParseAuthorities(const json& list, const char* what) {
  std::vector<TrustedAuthority> out;
  if (!list.is_array() || list.size() > 64)
    return InvalidArgument(std::string("sign: trust config: ") + what + " is not a list");
  for (const auto& a : list) {
    TrustedAuthority ta;
    AIRLOCK_TRY(ParseValidFor(a, &ta.valid_from, &ta.valid_until));
    const json* chain = Member(a, "certChain");
    const json* certs = chain ? Member(*chain, "certificates") : nullptr;
    if (!certs || !certs->is_array() || certs->empty() || certs->size() > 16)
      return InvalidArgument(std::string("sign: trust config: a ") + what +
                             " entry has no certChain.certificates");
    for (const auto& c : *certs) {
      auto der = Base64Decode(StringMember(c, "rawBytes"));
      if (!der) return InvalidArgument("sign: trust config: a certificate is not base64");
      auto cert = ParseDerCertificate(*der);
      if (!cert.has_value())
        return InvalidArgument("sign: trust config: unreadable certificate in " +
                               std::string(what));
      ta.chain.push_back(std::move(*cert));
    }
    if (const json* subject = Member(a, "subject"))
      ta.name = StringMember(*subject, "organization") + " " + StringMember(*subject, "commonName");
    if (ta.name.empty() || ta.name == " ") ta.name = StringMember(a, "uri");
    out.push_back(std::move(ta));
  }
  return out;
}

// The logId's hex form, as Rekor's signed entry timestamp payload spells it.
std::string SetPayload(const TlogEntry& e) {
  json j = json::object();
  j["body"] = Base64Encode(e.canonicalized_body);
  j["integratedTime"] = e.integrated_time;
  j["logID"] = HexEncode(e.log_key_id);
  j["logIndex"] = e.log_index;
  return j.dump();  // nlohmann sorts keys: the canonical JSON Rekor signed
}

// The checkpoint is a C2SP signed note (core/signed_note.h parses it, as audit does for Airlock's
// own logs): its body names the tree size and root hash of the inclusion proof, and a signature
// line whose key hint is the first four bytes of the log's key id verifies with the log's key.
Status VerifyCheckpoint(const TlogEntry& e, const TrustedLogKey& log) {
  auto note = core::ParseNote(e.checkpoint);
  if (!note.has_value()) return PermissionDenied("malformed checkpoint: " + note.error().message());
  auto cp = core::ParseCheckpointBody(note->body);
  if (!cp.has_value()) return PermissionDenied("malformed checkpoint: " + cp.error().message());
  if (e.tree_size < 0 || cp->size != static_cast<std::uint64_t>(e.tree_size))
    return PermissionDenied("checkpoint tree size " + std::to_string(cp->size) +
                            " differs from the proof's " + std::to_string(e.tree_size));
  if (std::string_view(reinterpret_cast<const char*>(cp->root.data()), cp->root.size()) !=
      e.root_hash)
    return PermissionDenied("checkpoint root hash differs from the inclusion proof's");
  std::uint32_t hint = 0;
  for (std::size_t i = 0; i < 4 && i < log.key_id.size(); ++i)
    hint = (hint << 8) | static_cast<std::uint8_t>(log.key_id[i]);
  for (const auto& sig : note->signatures)
    if (sig.key_id == hint && VerifyMessage(log.key.get(), EVP_sha256(), note->body, sig.signature))
      return Status::Ok();
  return PermissionDenied("checkpoint is not signed by the log's key in the trust config");
}

// The Rekor body must describe this bundle: a dsse 0.0.1 entry over this payload carrying exactly
// one signature, this one, whose verifier is exactly this certificate.
Status CheckEntryBody(const TlogEntry& e, const Bundle& b, X509* leaf) {
  if (e.kind != "dsse" || e.kind_version != "0.0.1")
    return Unsupported("a Rekor entry of kind " + e.kind + " " + e.kind_version +
                       " (Airlock checks dsse 0.0.1 entries)");
  auto parsed = ParseStrictJson(e.canonicalized_body, "the Rekor entry body");
  if (!parsed.has_value()) return PermissionDenied(parsed.error().message());
  const json& body = *parsed;
  if (!body.is_object()) return PermissionDenied("the Rekor entry body is not a JSON object");
  if (StringMember(body, "kind") != "dsse" || StringMember(body, "apiVersion") != "0.0.1")
    return PermissionDenied("the Rekor entry body is not a dsse 0.0.1 entry");
  const json* spec = Member(body, "spec");
  if (!spec || !spec->is_object()) return PermissionDenied("the Rekor entry body has no spec");
  for (Status s :
       {KnownMembers(body, {"apiVersion", "kind", "spec"}, "the Rekor entry body"),
        KnownMembers(*spec, {"envelopeHash", "payloadHash", "signatures"}, "the Rekor entry spec")})
    if (!s.ok()) return PermissionDenied(s.message());
  const json* payload_hash = Member(*spec, "payloadHash");
  if (!payload_hash || StringMember(*payload_hash, "algorithm") != "sha256" ||
      StringMember(*payload_hash, "value") != HexEncode(Sha256Raw(b.payload)))
    return PermissionDenied("the Rekor entry records another payload than the bundle's");
  const json* sigs = Member(*spec, "signatures");
  if (!sigs || !sigs->is_array() || sigs->empty())
    return PermissionDenied("the Rekor entry has no signatures");
  if (sigs->size() != 1)
    return PermissionDenied("the Rekor entry records " + std::to_string(sigs->size()) +
                            " signatures; a bundle's entry records exactly one");
  const json& s0 = (*sigs)[0];
  auto sig = Base64Decode(StringMember(s0, "signature"));
  auto verifier = Base64Decode(StringMember(s0, "verifier"));
  if (!sig || *sig != b.signature)
    return PermissionDenied("the Rekor entry records another signature than the bundle's");
  auto certs = verifier ? LoadPemCertificates(*verifier)
                        : Result<std::vector<X509Ptr>>(Corrupt("no verifier"));
  if (!certs.has_value() || certs->size() != 1 || DerOf((*certs)[0].get()) != DerOf(leaf))
    return PermissionDenied(
        "the Rekor entry records another certificate than the bundle's (its verifier must be "
        "exactly the bundle's certificate)");
  return Status::Ok();
}

struct X509StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};

std::optional<std::time_t> AsnTime(const ASN1_TIME* t) {
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return timegm(&tm);
}

// Verifies one RFC 3161 timestamp over the DSSE signature against the trusted timestamp
// authorities; returns its time.
Result<std::time_t> VerifyTimestamp(const std::string& der, const std::string& signature,
                                    const TrustedRoot& root) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  std::unique_ptr<TS_RESP, decltype(&TS_RESP_free)> resp(
      d2i_TS_RESP(nullptr, &p, static_cast<long>(der.size())), TS_RESP_free);
  if (!resp || !TS_RESP_get_tst_info(resp.get()) || !TS_RESP_get_token(resp.get())) {
    ERR_clear_error();
    return PermissionDenied("an RFC 3161 timestamp is not a readable TimeStampResp");
  }
  auto claimed = AsnTime(TS_TST_INFO_get_time(TS_RESP_get_tst_info(resp.get())));
  if (!claimed) return PermissionDenied("an RFC 3161 timestamp has an unreadable time");
  // The signer, to name it when no authority of the trust config vouches for it.
  std::string signer = "an unknown signer";
  PKCS7* token = TS_RESP_get_token(resp.get());
  if (PKCS7_type_is_signed(token) && token->d.sign && token->d.sign->cert) {
    STACK_OF(X509)* certs = token->d.sign->cert;
    for (int i = 0; i < sk_X509_num(certs); ++i) {
      X509* c = sk_X509_value(certs, i);
      if ((X509_get_extension_flags(c) & EXFLAG_XKUSAGE) &&
          (X509_get_extended_key_usage(c) & XKU_TIMESTAMP)) {
        signer = SubjectOf(c);
        break;
      }
    }
  }
  for (const auto& tsa : root.timestamp_authorities) {
    if (!ValidAt(tsa.valid_from, tsa.valid_until, *claimed)) continue;
    std::unique_ptr<TS_VERIFY_CTX, decltype(&TS_VERIFY_CTX_free)> ctx(TS_VERIFY_CTX_new(),
                                                                      TS_VERIFY_CTX_free);
    X509_STORE* store = X509_STORE_new();
    BIO* data = BIO_new_mem_buf(signature.data(), static_cast<int>(signature.size()));
    if (!ctx || !store || !data) {
      X509_STORE_free(store);
      BIO_free(data);
      return Internal("sign: out of memory");
    }
    for (const auto& c : tsa.chain) X509_STORE_add_cert(store, c.get());
    X509_VERIFY_PARAM* param = X509_STORE_get0_param(store);
    X509_VERIFY_PARAM_set_time(param, *claimed);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
    TS_VERIFY_CTX_set_flags(ctx.get(), TS_VFY_VERSION | TS_VFY_SIGNATURE | TS_VFY_DATA);
    TS_VERIFY_CTX_set_store(ctx.get(), store);  // owned by ctx from here
    TS_VERIFY_CTX_set_data(ctx.get(), data);    // owned by ctx from here
    int ok = TS_RESP_verify_response(ctx.get(), resp.get());
    ERR_clear_error();
    if (ok == 1) return *claimed;
  }
  return PermissionDenied(
      "the bundle's RFC 3161 timestamp is signed by " + signer +
      ", which no timestampAuthorities entry of the trust config certifies (or it does not cover "
      "the signature); its time cannot be trusted offline");
}

// How often the extension `oid` occurs in `cert` (RFC 5280 allows it once).
int ExtensionCount(X509* cert, const ASN1_OBJECT* oid) {
  int count = 0;
  for (int idx = X509_get_ext_by_OBJ(cert, oid, -1); idx >= 0;
       idx = X509_get_ext_by_OBJ(cert, oid, idx))
    ++count;
  return count;
}

struct ObjectFree {
  void operator()(ASN1_OBJECT* o) const { ASN1_OBJECT_free(o); }
};
using ObjectPtr = std::unique_ptr<ASN1_OBJECT, ObjectFree>;

// The email and URI names of the certificate's SubjectAltName. Errors: a duplicated extension.
Result<std::vector<std::string>> SubjectAltNames(X509* cert) {
  std::vector<std::string> out;
  int first = X509_get_ext_by_NID(cert, NID_subject_alt_name, -1);
  if (first >= 0 && X509_get_ext_by_NID(cert, NID_subject_alt_name, first) >= 0)
    return PermissionDenied("the certificate has two SubjectAltName extensions");
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  ERR_clear_error();
  if (!names) return out;
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
    const ASN1_IA5STRING* s = nullptr;
    if (n->type == GEN_EMAIL) s = n->d.rfc822Name;
    if (n->type == GEN_URI) s = n->d.uniformResourceIdentifier;
    if (s)
      out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
  }
  GENERAL_NAMES_free(names);
  return out;
}

// Fulcio's OIDC issuer: extension 1.3.6.1.4.1.57264.1.8 (a DER UTF8String), or the deprecated
// 1.3.6.1.4.1.57264.1.1 (the raw string). Either occurs at most once; .8 must be a well-formed
// UTF8String with nothing after it; when both are present they must name the same issuer (a
// reader that prefers the other one would see another identity). "" when neither is present.
Result<std::string> FulcioIssuer(X509* cert) {
  ObjectPtr v2(OBJ_txt2obj("1.3.6.1.4.1.57264.1.8", 1));
  ObjectPtr v1(OBJ_txt2obj("1.3.6.1.4.1.57264.1.1", 1));
  if (!v1 || !v2) return Internal("sign: out of memory");
  if (ExtensionCount(cert, v2.get()) > 1 || ExtensionCount(cert, v1.get()) > 1)
    return PermissionDenied("the certificate carries the Fulcio issuer extension twice");
  std::optional<std::string> from_v2, from_v1;
  if (int idx = X509_get_ext_by_OBJ(cert, v2.get(), -1); idx >= 0) {
    ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    const unsigned char* p = ASN1_STRING_get0_data(value);
    const unsigned char* end = p + ASN1_STRING_length(value);
    ASN1_UTF8STRING* str = d2i_ASN1_UTF8STRING(nullptr, &p, ASN1_STRING_length(value));
    ERR_clear_error();
    if (!str || p != end) {
      ASN1_UTF8STRING_free(str);
      return PermissionDenied(
          "the certificate's Fulcio issuer extension (1.3.6.1.4.1.57264.1.8) is not a UTF8String");
    }
    from_v2.emplace(reinterpret_cast<const char*>(ASN1_STRING_get0_data(str)),
                    static_cast<std::size_t>(ASN1_STRING_length(str)));
    ASN1_UTF8STRING_free(str);
  }
  if (int idx = X509_get_ext_by_OBJ(cert, v1.get(), -1); idx >= 0) {
    ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    from_v1.emplace(reinterpret_cast<const char*>(ASN1_STRING_get0_data(value)),
                    static_cast<std::size_t>(ASN1_STRING_length(value)));
  }
  if (from_v2 && from_v1 && *from_v2 != *from_v1)
    return PermissionDenied("the certificate's two Fulcio issuer extensions disagree (" + *from_v2 +
                            " and " + *from_v1 + ")");
  return from_v2 ? *from_v2 : from_v1 ? *from_v1 : std::string();
}

// A Fulcio certificate signs and nothing else: KeyUsage digitalSignature and ExtendedKeyUsage
// codeSigning both present, no basicConstraints CA:TRUE and no keyCertSign.
Status CheckSigningLeaf(X509* leaf) {
  std::uint32_t flags = X509_get_extension_flags(leaf);
  if (flags & EXFLAG_INVALID) return PermissionDenied("the certificate has invalid extensions");
  if (!(flags & EXFLAG_KUSAGE) || !(X509_get_key_usage(leaf) & KU_DIGITAL_SIGNATURE))
    return PermissionDenied("the certificate's KeyUsage lacks digitalSignature");
  if (!(flags & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(leaf) & XKU_CODE_SIGN))
    return PermissionDenied("the certificate's ExtendedKeyUsage lacks codeSigning");
  // X509_check_ca alone says "not a CA" for CA:TRUE without keyCertSign; a leaf claims neither.
  if ((flags & EXFLAG_CA) || (X509_get_key_usage(leaf) & KU_KEY_CERT_SIGN) ||
      X509_check_ca(leaf) != 0)
    return PermissionDenied("the certificate is a CA certificate, not a signing certificate");
  return Status::Ok();
}

// The certificate of a trusted CA chain that issued `leaf` (its signature verifies), or nullptr.
X509* IssuerOf(X509* leaf, const TrustedRoot& root) {
  for (const auto& ca : root.certificate_authorities)
    for (const auto& c : ca.chain) {
      EVP_PKEY* key = X509_get0_pubkey(c.get());
      if (key && X509_check_issued(c.get(), leaf) == X509_V_OK && X509_verify(leaf, key) == 1)
        return c.get();
    }
  ERR_clear_error();
  return nullptr;
}

std::string BigEndian(std::uint64_t v, int bytes) {
  std::string out(static_cast<std::size_t>(bytes), '\0');
  for (int i = 0; i < bytes; ++i) out[i] = static_cast<char>((v >> (8 * (bytes - 1 - i))) & 0xff);
  return out;
}

struct SctListFree {
  void operator()(STACK_OF(SCT) * s) const { SCT_LIST_free(s); }
};

// RFC 6962 section 3.2: each SCT embedded in `leaf` is a CT log's signature over the
// precertificate (the TBSCertificate without the SCT extension) and the issuer's key hash. Every
// SCT must verify with a ctlog of the trust root valid at the SCT's time, and there must be one.
Status VerifyEmbeddedScts(X509* leaf, X509* issuer, const std::vector<TrustedLogKey>& ctlogs,
                          std::vector<std::string>* notes) {
  int first = X509_get_ext_by_NID(leaf, NID_ct_precert_scts, -1);
  if (first < 0)
    return PermissionDenied(
        "the certificate carries no SCT (the trust config lists CT logs, so one is required)");
  if (X509_get_ext_by_NID(leaf, NID_ct_precert_scts, first) >= 0)
    return PermissionDenied("the certificate carries two SCT list extensions");
  std::unique_ptr<STACK_OF(SCT), SctListFree> scts(
      static_cast<STACK_OF(SCT)*>(X509_get_ext_d2i(leaf, NID_ct_precert_scts, nullptr, nullptr)));
  ERR_clear_error();
  if (!scts || sk_SCT_num(scts.get()) == 0)
    return PermissionDenied("the certificate's SCT list is unreadable or empty");
  if (!issuer) return PermissionDenied("no trusted issuer to check the certificate's SCTs with");
  // The precertificate: the leaf's TBSCertificate without its SCT extension.
  std::unique_ptr<X509, X509Free> pre(X509_dup(leaf));
  if (!pre) return Internal("sign: out of memory");
  X509_EXTENSION_free(
      X509_delete_ext(pre.get(), X509_get_ext_by_NID(pre.get(), NID_ct_precert_scts, -1)));
  unsigned char* tbs_der = nullptr;
  int tbs_len = i2d_re_X509_tbs(pre.get(), &tbs_der);
  if (tbs_len <= 0 || tbs_len >= (1 << 24)) {
    OPENSSL_free(tbs_der);
    ERR_clear_error();
    return PermissionDenied("cannot re-encode the precertificate for the SCT check");
  }
  std::string tbs(reinterpret_cast<const char*>(tbs_der), static_cast<std::size_t>(tbs_len));
  OPENSSL_free(tbs_der);
  unsigned char* spki = nullptr;
  int spki_len = i2d_PUBKEY(X509_get0_pubkey(issuer), &spki);
  if (spki_len <= 0) {
    ERR_clear_error();
    return PermissionDenied("unreadable issuer key for the SCT check");
  }
  std::string issuer_key_hash =
      Sha256Raw(std::string_view(reinterpret_cast<const char*>(spki), spki_len));
  OPENSSL_free(spki);
  for (int i = 0; i < sk_SCT_num(scts.get()); ++i) {
    const SCT* sct = sk_SCT_value(scts.get(), i);
    unsigned char* id = nullptr;
    std::size_t id_len = SCT_get0_log_id(sct, &id);
    unsigned char* ext = nullptr;
    std::size_t ext_len = SCT_get0_extensions(sct, &ext);
    unsigned char* sig = nullptr;
    std::size_t sig_len = SCT_get0_signature(sct, &sig);
    if (SCT_get_version(sct) != SCT_VERSION_V1 || id_len != 32 || ext_len >= (1 << 16) ||
        sig_len == 0)
      return PermissionDenied("an SCT is not a well-formed v1 SCT");
    std::uint64_t millis = SCT_get_timestamp(sct);
    std::string log_id(reinterpret_cast<const char*>(id), id_len);
    std::string signed_data = std::string("\0\0", 2) + BigEndian(millis, 8) +
                              std::string("\0\x01", 2) + issuer_key_hash +
                              BigEndian(tbs.size(), 3) + tbs + BigEndian(ext_len, 2) +
                              std::string(reinterpret_cast<const char*>(ext), ext_len);
    std::time_t at = static_cast<std::time_t>(millis / 1000);
    bool verified = false;
    for (const auto& log : ctlogs)
      if (log.key_id == log_id && ValidAt(log.valid_from, log.valid_until, at) &&
          VerifyMessage(log.key.get(), EVP_sha256(), signed_data,
                        std::string_view(reinterpret_cast<const char*>(sig), sig_len)))
        verified = true;
    if (!verified)
      return PermissionDenied("an SCT (log " + HexEncode(log_id).substr(0, 16) +
                              "...) does not verify with a CT log of the trust config valid at " +
                              std::to_string(at));
    notes->push_back("SCT from CT log " + HexEncode(log_id).substr(0, 16) + "... verified, time " +
                     std::to_string(at));
  }
  return Status::Ok();
}

KeylessCheck Failed(VerifyFailure f, std::string message) {
  KeylessCheck k;
  k.failure = f;
  k.message = "sign: " + std::move(message);
  return k;
}

}  // namespace

bool VerifyInclusionProof(std::string_view leaf_hash, std::int64_t index, std::int64_t tree_size,
                          const std::vector<std::string>& path, std::string_view root_hash) {
  if (index < 0 || tree_size <= 0 || index >= tree_size) return false;
  std::uint64_t fn = static_cast<std::uint64_t>(index);
  std::uint64_t sn = static_cast<std::uint64_t>(tree_size - 1);
  std::string r(leaf_hash);
  for (const auto& p : path) {
    if (sn == 0 || p.size() != 32) return false;
    if ((fn & 1) || fn == sn) {
      r = Sha256Raw(std::string("\x01", 1) + p + r);
      if (!(fn & 1)) {
        while (!(fn & 1) && fn != 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = Sha256Raw(std::string("\x01", 1) + r + p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return sn == 0 && r == root_hash;
}

namespace {

// The "tlogs" or "ctlogs" list of a trusted root: keys with their ids and validity.
Result<std::vector<TrustedLogKey>> ParseLogKeys(const json& list, const char* what) {
  if (!list.is_array() || list.size() > 64)
    return InvalidArgument(std::string("sign: trust config: ") + what + " is not a list");
  std::vector<TrustedLogKey> out;
  for (const auto& t : list) {
    TrustedLogKey k;
    const json* pk = Member(t, "publicKey");
    auto raw = pk ? Base64Decode(StringMember(*pk, "rawBytes")) : std::nullopt;
    if (!raw)
      return InvalidArgument(std::string("sign: trust config: a ") + what +
                             " entry without publicKey.rawBytes");
    auto key = LoadPublicKey(*raw);
    if (!key.has_value())
      return InvalidArgument(std::string("sign: trust config: a ") + what +
                             " key is not an EC public key (" + key.error().message() + ")");
    k.key = std::move(*key);
    AIRLOCK_TRY(ParseValidFor(*pk, &k.valid_from, &k.valid_until));
    const json* log_id = Member(t, "logId");
    auto id = log_id ? Base64Decode(StringMember(*log_id, "keyId")) : std::nullopt;
    k.key_id = id ? *id : Sha256Raw(*raw);
    k.base_url = StringMember(t, "baseUrl");
    out.push_back(std::move(k));
  }
  return out;
}

}  // namespace

Result<TrustedRoot> ParseTrustedRoot(std::string_view json_text) {
  if (json_text.size() > kMaxTrustConfigBytes)
    return InvalidArgument("sign: trust config larger than 4 MiB");
  auto parsed = ParseStrictJson(json_text, "sign: trust config");
  if (!parsed.has_value()) return InvalidArgument(parsed.error().message());
  const json& j = *parsed;
  if (!j.is_object()) return InvalidArgument("sign: trust config is not a JSON object");
  const json* tr = Member(j, "trustedRoot");
  if (!tr) tr = &j;  // a bare TrustedRoot
  TrustedRoot root;
  const json* tlogs = Member(*tr, "tlogs");
  if (!tlogs || !tlogs->is_array() || tlogs->empty())
    return InvalidArgument("sign: trust config has no tlogs (transparency-log keys)");
  AIRLOCK_ASSIGN_OR_RETURN(root.tlogs, ParseLogKeys(*tlogs, "tlogs"));
  if (const json* ctlogs = Member(*tr, "ctlogs")) {
    AIRLOCK_ASSIGN_OR_RETURN(root.ctlogs, ParseLogKeys(*ctlogs, "ctlogs"));
  }
  const json* cas = Member(*tr, "certificateAuthorities");
  if (!cas) return InvalidArgument("sign: trust config has no certificateAuthorities");
  AIRLOCK_ASSIGN_OR_RETURN(root.certificate_authorities,
                           ParseAuthorities(*cas, "certificateAuthorities"));
  if (root.certificate_authorities.empty())
    return InvalidArgument("sign: trust config has no certificateAuthorities");
  if (const json* tsas = Member(*tr, "timestampAuthorities")) {
    AIRLOCK_ASSIGN_OR_RETURN(root.timestamp_authorities,
                             ParseAuthorities(*tsas, "timestampAuthorities"));
  }
  return root;
}

KeylessCheck VerifyKeylessMaterial(const Bundle& b, const TrustedRoot& root,
                                   const std::string& identity, const std::string& issuer) {
  if (b.keyless_certificate.empty())
    return Failed(VerifyFailure::kUnsupported,
                  "--trust-config verifies keyless Sigstore bundles (a Fulcio certificate); this "
                  "bundle carries a key or a certificate chain: use --key or --certificate-chain");
  auto leaf = ParseDerCertificate(b.keyless_certificate);
  if (!leaf.has_value()) return Failed(VerifyFailure::kMalformedBundle, leaf.error().message());
  KeylessCheck out;
  if (b.tlog_entries.empty())
    return Failed(VerifyFailure::kUntrustedLogEntry,
                  "the keyless bundle has no transparency-log entry; nothing proves when the "
                  "short-lived certificate signed");

  // 1. Transparency-log entries: body, inclusion proof + checkpoint, signed entry timestamp.
  for (const TlogEntry& e : b.tlog_entries) {
    const std::string which = "Rekor entry " + std::to_string(e.log_index);
    const TrustedLogKey* log = nullptr;
    for (const auto& t : root.tlogs)
      if (t.key_id == e.log_key_id) log = &t;
    if (!log)
      return Failed(VerifyFailure::kUntrustedLogEntry,
                    which + " is from a log (key id " + HexEncode(e.log_key_id).substr(0, 16) +
                        "...) that the trust config does not list");
    Status body = CheckEntryBody(e, b, leaf->get());
    if (!body.ok())
      return Failed(body.code() == StatusCode::kUnsupported ? VerifyFailure::kUnsupported
                                                            : VerifyFailure::kUntrustedLogEntry,
                    which + ": " + body.message());
    // Bundle v0.3 (as v0.2) requires an inclusion proof with a checkpoint: a signed entry
    // timestamp alone is the log's promise to include the entry, not proof that it did.
    if (!e.has_inclusion_proof)
      return Failed(VerifyFailure::kUntrustedLogEntry,
                    which + " has no inclusion proof (a v0.3 bundle must carry one)");
    std::string leaf_hash = Sha256Raw(std::string("\x00", 1) + e.canonicalized_body);
    if (!VerifyInclusionProof(leaf_hash, e.proof_log_index, e.tree_size, e.proof_hashes,
                              e.root_hash))
      return Failed(VerifyFailure::kUntrustedLogEntry,
                    which + ": the inclusion proof does not lead to its root hash");
    if (e.checkpoint.empty())
      return Failed(VerifyFailure::kUntrustedLogEntry,
                    which + ": the inclusion proof has no signed checkpoint");
    Status cp = VerifyCheckpoint(e, *log);
    if (!cp.ok()) return Failed(VerifyFailure::kUntrustedLogEntry, which + ": " + cp.message());
    out.notes.push_back(which + ": inclusion proof verified against a checkpoint signed by " +
                        (log->base_url.empty() ? "the log" : log->base_url) + " (tree size " +
                        std::to_string(e.tree_size) + ")");
    if (!e.signed_entry_timestamp.empty()) {
      if (e.integrated_time < 0)
        return Failed(VerifyFailure::kUntrustedLogEntry,
                      which + " has a signed entry timestamp but no integrated time");
      if (!VerifyMessage(log->key.get(), EVP_sha256(), SetPayload(e), e.signed_entry_timestamp))
        return Failed(VerifyFailure::kUntrustedLogEntry,
                      which +
                          ": the signed entry timestamp does not verify with the log's key "
                          "(entry or integrated time altered)");
      std::time_t t = static_cast<std::time_t>(e.integrated_time);
      if (!ValidAt(log->valid_from, log->valid_until, t))
        return Failed(VerifyFailure::kUntrustedLogEntry,
                      which + ": the log key was not valid at the integrated time");
      out.signing_times.push_back(t);
      out.notes.push_back(which + ": signed entry timestamp verified, integrated time " +
                          std::to_string(e.integrated_time));
    }
  }
  // 2. RFC 3161 timestamps: every one present must verify (fail closed).
  for (const std::string& ts : b.rfc3161_timestamps) {
    auto t = VerifyTimestamp(ts, b.signature, root);
    if (!t.has_value()) return Failed(VerifyFailure::kUntrustedLogEntry, t.error().message());
    out.signing_times.push_back(*t);
    out.notes.push_back("RFC 3161 timestamp verified, time " + std::to_string(*t));
  }
  if (out.signing_times.empty())
    return Failed(VerifyFailure::kUntrustedLogEntry,
                  "no verified signing time (no signed entry timestamp, no trusted RFC 3161 "
                  "timestamp): the short-lived certificate cannot be checked");

  // 3. The Fulcio certificate chains to a trusted CA at every signing time.
  for (std::time_t at : out.signing_times) {
    std::string last_error = "no certificate authority of the trust config was valid then";
    bool chained = false;
    for (const auto& ca : root.certificate_authorities) {
      if (!ValidAt(ca.valid_from, ca.valid_until, at)) continue;
      std::vector<X509Ptr> intermediates;
      std::vector<X509Ptr> anchors;
      for (std::size_t i = 0; i < ca.chain.size(); ++i) {
        X509_up_ref(ca.chain[i].get());
        (i + 1 == ca.chain.size() ? anchors : intermediates).emplace_back(ca.chain[i].get());
      }
      Status s = VerifyCertificateChainAt(leaf->get(), intermediates, anchors, at);
      if (s.ok()) {
        chained = true;
        break;
      }
      last_error = s.message();
    }
    if (!chained)
      return Failed(VerifyFailure::kUntrustedCertificate,
                    "the Fulcio certificate does not chain to the trust config at the signing "
                    "time " +
                        std::to_string(at) + ": " + last_error);
  }

  // 4. A signing leaf, logged in certificate transparency when the trust config lists CT logs.
  Status leaf_ok = CheckSigningLeaf(leaf->get());
  if (!leaf_ok.ok())
    return Failed(VerifyFailure::kUntrustedCertificate,
                  "the Fulcio certificate may not sign: " + leaf_ok.message());
  if (!root.ctlogs.empty()) {
    Status sct =
        VerifyEmbeddedScts(leaf->get(), IssuerOf(leaf->get(), root), root.ctlogs, &out.notes);
    if (!sct.ok())
      return Failed(VerifyFailure::kUntrustedCertificate,
                    "certificate transparency: " + sct.message());
  } else {
    out.notes.push_back("SCT not checked: the trust config lists no CT logs");
  }

  // 5. Identity and issuer, compared exactly.
  auto sans = SubjectAltNames(leaf->get());
  if (!sans.has_value()) return Failed(VerifyFailure::kIdentityMismatch, sans.error().message());
  auto issuer_ext = FulcioIssuer(leaf->get());
  if (!issuer_ext.has_value())
    return Failed(VerifyFailure::kIdentityMismatch, issuer_ext.error().message());
  const std::string& cert_issuer = *issuer_ext;
  bool identity_ok = false;
  for (const auto& s : *sans) identity_ok = identity_ok || s == identity;
  if (!identity_ok) {
    std::string names;
    for (const auto& s : *sans) names += (names.empty() ? "" : ", ") + s;
    return Failed(VerifyFailure::kIdentityMismatch,
                  "identity mismatch: the certificate names " +
                      (names.empty() ? std::string("no email or URI") : names) + ", not " +
                      identity);
  }
  if (cert_issuer != issuer)
    return Failed(VerifyFailure::kIdentityMismatch,
                  "identity provider mismatch: the certificate was issued for an identity from " +
                      (cert_issuer.empty() ? std::string("an unnamed issuer") : cert_issuer) +
                      ", not " + issuer);
  out.identity = identity;
  out.issuer = cert_issuer;
  out.leaf = std::move(*leaf);
  return out;
}

}  // namespace airlock::sign::internal
