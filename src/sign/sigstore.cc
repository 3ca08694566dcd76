#include "sign/internal/sigstore.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ts.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/hash.h"
#include "sign/internal/encoding.h"

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
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6)
    return std::nullopt;
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

// The checkpoint (a signed note: "origin\nsize\nbase64 root\n[extensions]\n\n— name sig\n"):
// the log key signs the text before the blank line; the signature names the key by the first
// four bytes of its key id.
Status VerifyCheckpoint(const TlogEntry& e, const TrustedLogKey& log) {
  std::size_t blank = e.checkpoint.find("\n\n");
  if (blank == std::string::npos) return PermissionDenied("checkpoint has no signature block");
  std::string text = e.checkpoint.substr(0, blank + 1);
  std::vector<std::string> lines;
  for (std::size_t pos = 0; pos < text.size();) {
    std::size_t nl = text.find('\n', pos);
    lines.push_back(text.substr(pos, nl - pos));
    pos = nl + 1;
  }
  if (lines.size() < 3) return PermissionDenied("checkpoint has fewer than three lines");
  if (lines[1] != std::to_string(e.tree_size))
    return PermissionDenied("checkpoint tree size " + lines[1] + " differs from the proof's " +
                            std::to_string(e.tree_size));
  auto root = Base64Decode(lines[2]);
  if (!root || *root != e.root_hash)
    return PermissionDenied("checkpoint root hash differs from the inclusion proof's");
  static const std::string kDash = "\xe2\x80\x94 ";  // U+2014 EM DASH and a space
  bool signed_by_log = false;
  for (std::size_t pos = blank + 2; pos < e.checkpoint.size();) {
    std::size_t nl = e.checkpoint.find('\n', pos);
    if (nl == std::string::npos) nl = e.checkpoint.size();
    std::string line = e.checkpoint.substr(pos, nl - pos);
    pos = nl + 1;
    if (line.compare(0, kDash.size(), kDash) != 0) continue;
    std::size_t space = line.rfind(' ');
    auto sig = Base64Decode(line.substr(space + 1));
    if (!sig || sig->size() < 5 || sig->compare(0, 4, log.key_id, 0, 4) != 0) continue;
    if (VerifyMessage(log.key.get(), EVP_sha256(), text, std::string_view(*sig).substr(4)))
      signed_by_log = true;
  }
  if (!signed_by_log)
    return PermissionDenied("checkpoint is not signed by the log's key in the trust config");
  return Status::Ok();
}

// The Rekor body must describe this bundle: a dsse 0.0.1 entry over this payload, carrying this
// signature and this certificate.
Status CheckEntryBody(const TlogEntry& e, const Bundle& b, X509* leaf) {
  if (e.kind != "dsse" || e.kind_version != "0.0.1")
    return Unsupported("a Rekor entry of kind " + e.kind + " " + e.kind_version +
                       " (Airlock checks dsse 0.0.1 entries)");
  json body = json::parse(e.canonicalized_body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object())
    return PermissionDenied("the Rekor entry body is not JSON");
  if (StringMember(body, "kind") != "dsse" || StringMember(body, "apiVersion") != "0.0.1")
    return PermissionDenied("the Rekor entry body is not a dsse 0.0.1 entry");
  const json* spec = Member(body, "spec");
  const json* payload_hash = spec ? Member(*spec, "payloadHash") : nullptr;
  if (!payload_hash || StringMember(*payload_hash, "algorithm") != "sha256" ||
      StringMember(*payload_hash, "value") != HexEncode(Sha256Raw(b.payload)))
    return PermissionDenied("the Rekor entry records another payload than the bundle's");
  const json* sigs = spec ? Member(*spec, "signatures") : nullptr;
  if (!sigs || !sigs->is_array()) return PermissionDenied("the Rekor entry has no signatures");
  std::string leaf_der = DerOf(leaf);
  for (const auto& s : *sigs) {
    auto sig = Base64Decode(StringMember(s, "signature"));
    auto verifier = Base64Decode(StringMember(s, "verifier"));
    if (!sig || !verifier || *sig != b.signature) continue;
    auto certs = LoadPemCertificates(*verifier);
    if (certs.has_value() && !certs->empty() && DerOf((*certs)[0].get()) == leaf_der)
      return Status::Ok();
  }
  return PermissionDenied(
      "the Rekor entry records another signature or certificate than the bundle's");
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

std::vector<std::string> SubjectAltNames(X509* cert) {
  std::vector<std::string> out;
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
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
// 1.3.6.1.4.1.57264.1.1 (the raw string).
std::string FulcioIssuer(X509* cert) {
  for (const char* oid : {"1.3.6.1.4.1.57264.1.8", "1.3.6.1.4.1.57264.1.1"}) {
    ASN1_OBJECT* obj = OBJ_txt2obj(oid, 1);
    if (!obj) continue;
    int idx = X509_get_ext_by_OBJ(cert, obj, -1);
    ASN1_OBJECT_free(obj);
    if (idx < 0) continue;
    ASN1_OCTET_STRING* value = X509_EXTENSION_get_data(X509_get_ext(cert, idx));
    const unsigned char* p = ASN1_STRING_get0_data(value);
    long len = ASN1_STRING_length(value);
    if (oid[std::string_view(oid).size() - 1] == '8') {
      ASN1_UTF8STRING* s = d2i_ASN1_UTF8STRING(nullptr, &p, len);
      if (!s) {
        ERR_clear_error();
        continue;
      }
      std::string out(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                      static_cast<std::size_t>(ASN1_STRING_length(s)));
      ASN1_UTF8STRING_free(s);
      return out;
    }
    return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(len));
  }
  return {};
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

Result<TrustedRoot> ParseTrustedRoot(std::string_view json_text) {
  if (json_text.size() > kMaxTrustConfigBytes)
    return InvalidArgument("sign: trust config larger than 4 MiB");
  json j = json::parse(json_text.begin(), json_text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return InvalidArgument("sign: trust config is not a JSON object");
  const json* tr = Member(j, "trustedRoot");
  if (!tr) tr = &j;  // a bare TrustedRoot
  TrustedRoot root;
  const json* tlogs = Member(*tr, "tlogs");
  if (!tlogs || !tlogs->is_array() || tlogs->empty() || tlogs->size() > 64)
    return InvalidArgument("sign: trust config has no tlogs (transparency-log keys)");
  for (const auto& t : *tlogs) {
    TrustedLogKey k;
    const json* pk = Member(t, "publicKey");
    auto raw = pk ? Base64Decode(StringMember(*pk, "rawBytes")) : std::nullopt;
    if (!raw) return InvalidArgument("sign: trust config: a tlog without publicKey.rawBytes");
    auto key = LoadPublicKey(*raw);
    if (!key.has_value())
      return InvalidArgument("sign: trust config: a tlog key is not an EC public key (" +
                             key.error().message() + ")");
    k.key = std::move(*key);
    AIRLOCK_TRY(ParseValidFor(*pk, &k.valid_from, &k.valid_until));
    const json* log_id = Member(t, "logId");
    auto id = log_id ? Base64Decode(StringMember(*log_id, "keyId")) : std::nullopt;
    k.key_id = id ? *id : Sha256Raw(*raw);
    k.base_url = StringMember(t, "baseUrl");
    root.tlogs.push_back(std::move(k));
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
    if (!e.has_inclusion_proof && e.signed_entry_timestamp.empty())
      return Failed(VerifyFailure::kUntrustedLogEntry,
                    which + " has neither an inclusion proof nor a signed entry timestamp");
    if (e.has_inclusion_proof) {
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
    }
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

  // 4. Identity and issuer.
  std::vector<std::string> sans = SubjectAltNames(leaf->get());
  std::string cert_issuer = FulcioIssuer(leaf->get());
  bool identity_ok = false;
  for (const auto& s : sans) identity_ok = identity_ok || s == identity;
  if (!identity_ok) {
    std::string names;
    for (const auto& s : sans) names += (names.empty() ? "" : ", ") + s;
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
