#include "sign/bundle.h"

#include <cmath>
#include <nlohmann/json.hpp>
#include <set>

#include "core/text.h"
#include "sign/internal/encoding.h"

namespace airlock::sign {
namespace {

using nlohmann::json;
using nlohmann::ordered_json;

// JSON nested deeper than this is rejected before nlohmann sees it (bounded work and stack).
constexpr std::size_t kMaxJsonDepth = 64;

Result<json> ParseJson(std::string_view text, const char* what) {
  if (core::JsonNestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth)
    return Corrupt(std::string("sign: malformed ") + what + ": JSON nested deeper than " +
                   std::to_string(kMaxJsonDepth) + " levels");
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Corrupt(std::string("sign: malformed ") + what + ": not valid JSON");
  return j;
}

const json* Member(const json& obj, const char* key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Status Bad(const std::string& what) { return Corrupt("sign: malformed bundle: " + what); }

Result<std::string> RequireString(const json& obj, const char* key, const std::string& where) {
  const json* v = Member(obj, key);
  if (!v) return Bad("missing " + where + "." + key);
  if (!v->is_string()) return Bad(where + "." + key + " is not a string");
  return v->get<std::string>();
}

Result<std::string> RequireBase64(const json& obj, const char* key, const std::string& where) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string text, RequireString(obj, key, where));
  auto raw = internal::Base64Decode(text);
  if (!raw) return Bad(where + "." + key + " is not valid base64");
  return *raw;
}

Status BadStatement(const std::string& what) {
  return Corrupt("sign: malformed in-toto statement: " + what);
}

bool IsLowerHex(const std::string& s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

// A model-relative resource path must not escape the model.
bool SafeRelativePath(const std::string& p) {
  if (p.empty() || p[0] == '/') return false;
  std::size_t pos = 0;
  while (pos <= p.size()) {
    std::size_t slash = p.find('/', pos);
    if (slash == std::string::npos) slash = p.size();
    if (p.compare(pos, slash - pos, "..") == 0 && slash - pos == 2) return false;
    pos = slash + 1;
  }
  return p.find('\0') == std::string::npos;
}

// protobuf JSON writes int64 as a decimal string; numbers are accepted too.
Result<std::int64_t> RequireInt64(const json& obj, const char* key, const std::string& where) {
  const json* v = Member(obj, key);
  if (!v) return Bad("missing " + where + "." + key);
  if (v->is_number_integer()) {
    std::int64_t n = v->get<std::int64_t>();
    if (n < 0) return Bad(where + "." + key + " is negative");
    return n;
  }
  if (!v->is_string()) return Bad(where + "." + key + " is not an integer");
  const std::string& s = v->get_ref<const std::string&>();
  if (s.empty() || s.size() > 18) return Bad(where + "." + key + " is not an integer");
  std::int64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return Bad(where + "." + key + " is not an integer");
    n = n * 10 + (c - '0');
  }
  return n;
}

Result<TlogEntry> ParseTlogEntry(const json& e) {
  const std::string where = "tlogEntries[]";
  if (!e.is_object()) return Bad("a tlogEntries entry is not an object");
  TlogEntry t;
  AIRLOCK_ASSIGN_OR_RETURN(t.log_index, RequireInt64(e, "logIndex", where));
  const json* log_id = Member(e, "logId");
  if (!log_id || !log_id->is_object()) return Bad("missing tlogEntries[].logId object");
  AIRLOCK_ASSIGN_OR_RETURN(t.log_key_id, RequireBase64(*log_id, "keyId", where + ".logId"));
  const json* kv = Member(e, "kindVersion");
  if (!kv || !kv->is_object()) return Bad("missing tlogEntries[].kindVersion object");
  AIRLOCK_ASSIGN_OR_RETURN(t.kind, RequireString(*kv, "kind", where + ".kindVersion"));
  AIRLOCK_ASSIGN_OR_RETURN(t.kind_version, RequireString(*kv, "version", where + ".kindVersion"));
  if (Member(e, "integratedTime")) {
    AIRLOCK_ASSIGN_OR_RETURN(t.integrated_time, RequireInt64(e, "integratedTime", where));
  }
  if (const json* promise = Member(e, "inclusionPromise")) {
    if (!promise->is_object()) return Bad("tlogEntries[].inclusionPromise is not an object");
    AIRLOCK_ASSIGN_OR_RETURN(t.signed_entry_timestamp,
                             RequireBase64(*promise, "signedEntryTimestamp", where));
  }
  if (const json* proof = Member(e, "inclusionProof")) {
    const std::string pw = where + ".inclusionProof";
    if (!proof->is_object()) return Bad(pw + " is not an object");
    t.has_inclusion_proof = true;
    AIRLOCK_ASSIGN_OR_RETURN(t.proof_log_index, RequireInt64(*proof, "logIndex", pw));
    AIRLOCK_ASSIGN_OR_RETURN(t.tree_size, RequireInt64(*proof, "treeSize", pw));
    AIRLOCK_ASSIGN_OR_RETURN(t.root_hash, RequireBase64(*proof, "rootHash", pw));
    const json* hashes = Member(*proof, "hashes");
    if (hashes) {
      // A Merkle path has at most 63 steps for a tree of < 2^63 leaves.
      if (!hashes->is_array() || hashes->size() > 64)
        return Bad(pw + ".hashes is not an array of at most 64 hashes");
      for (const auto& h : *hashes) {
        if (!h.is_string()) return Bad(pw + ".hashes[] is not a string");
        auto raw = internal::Base64Decode(h.get<std::string>());
        if (!raw) return Bad(pw + ".hashes[] is not valid base64");
        t.proof_hashes.push_back(std::move(*raw));
      }
    }
    if (const json* cp = Member(*proof, "checkpoint")) {
      if (!cp->is_object()) return Bad(pw + ".checkpoint is not an object");
      AIRLOCK_ASSIGN_OR_RETURN(t.checkpoint, RequireString(*cp, "envelope", pw + ".checkpoint"));
    }
  }
  AIRLOCK_ASSIGN_OR_RETURN(t.canonicalized_body, RequireBase64(e, "canonicalizedBody", where));
  return t;
}

}  // namespace

Result<Bundle> ParseBundle(std::string_view json_text) {
  if (json_text.size() > kMaxBundleBytes) return Bad("larger than 64 MiB");
  AIRLOCK_ASSIGN_OR_RETURN(json j, ParseJson(json_text, "bundle"));
  if (!j.is_object()) return Bad("top level is not a JSON object");
  Bundle b;
  if (const json* mt = Member(j, "mediaType")) {
    if (!mt->is_string()) return Bad("mediaType is not a string");
    b.media_type = mt->get<std::string>();
  }
  const json* vm = Member(j, "verificationMaterial");
  if (!vm || !vm->is_object()) return Bad("missing verificationMaterial object");
  if (const json* pk = Member(*vm, "publicKey")) {
    if (!pk->is_object()) return Bad("verificationMaterial.publicKey is not an object");
    b.has_public_key = true;
    if (const json* hint = Member(*pk, "hint")) {
      if (!hint->is_string()) return Bad("publicKey.hint is not a string");
      b.public_key_hint = core::AsciiLower(hint->get<std::string>());
    }
  } else if (const json* chain = Member(*vm, "x509CertificateChain")) {
    const json* certs = Member(*chain, "certificates");
    if (!certs || !certs->is_array() || certs->empty())
      return Bad("x509CertificateChain.certificates is not a non-empty array");
    if (certs->size() > 16) return Bad("x509CertificateChain has more than 16 certificates");
    for (const auto& c : *certs) {
      if (!c.is_object()) return Bad("a certificate entry is not an object");
      AIRLOCK_ASSIGN_OR_RETURN(std::string der, RequireBase64(c, "rawBytes", "certificate"));
      if (der.empty()) return Bad("an empty certificate");
      b.certificate_chain.push_back(std::move(der));
    }
  } else if (const json* cert = Member(*vm, "certificate")) {
    if (!cert->is_object()) return Bad("verificationMaterial.certificate is not an object");
    AIRLOCK_ASSIGN_OR_RETURN(b.keyless_certificate,
                             RequireBase64(*cert, "rawBytes", "verificationMaterial.certificate"));
  } else {
    return Unsupported(
        "sign: unsupported bundle: verificationMaterial has no publicKey, x509CertificateChain "
        "or certificate");
  }
  if (const json* tlog = Member(*vm, "tlogEntries")) {
    if (!tlog->is_array()) return Bad("verificationMaterial.tlogEntries is not an array");
    if (tlog->size() > 16) return Bad("more than 16 tlogEntries");
    b.has_tlog_entries = !tlog->empty();
    for (const auto& e : *tlog) {
      AIRLOCK_ASSIGN_OR_RETURN(TlogEntry entry, ParseTlogEntry(e));
      b.tlog_entries.push_back(std::move(entry));
    }
  }
  if (const json* tvd = Member(*vm, "timestampVerificationData")) {
    if (!tvd->is_object()) return Bad("timestampVerificationData is not an object");
    if (const json* ts = Member(*tvd, "rfc3161Timestamps")) {
      if (!ts->is_array() || ts->size() > 16)
        return Bad("rfc3161Timestamps is not an array of at most 16 entries");
      for (const auto& t : *ts) {
        if (!t.is_object()) return Bad("an rfc3161Timestamps entry is not an object");
        AIRLOCK_ASSIGN_OR_RETURN(std::string der,
                                 RequireBase64(t, "signedTimestamp", "rfc3161Timestamps[]"));
        b.rfc3161_timestamps.push_back(std::move(der));
      }
    }
  }
  const json* env = Member(j, "dsseEnvelope");
  if (!env) {
    if (Member(j, "messageSignature"))
      return Unsupported("sign: unsupported bundle: a messageSignature, not a DSSE envelope");
    return Bad("missing dsseEnvelope");
  }
  if (!env->is_object()) return Bad("dsseEnvelope is not an object");
  AIRLOCK_ASSIGN_OR_RETURN(b.payload, RequireBase64(*env, "payload", "dsseEnvelope"));
  AIRLOCK_ASSIGN_OR_RETURN(b.payload_type, RequireString(*env, "payloadType", "dsseEnvelope"));
  const json* sigs = Member(*env, "signatures");
  if (!sigs || !sigs->is_array() || sigs->empty())
    return Bad("dsseEnvelope.signatures is not a non-empty array");
  const json& s0 = (*sigs)[0];
  if (!s0.is_object()) return Bad("dsseEnvelope.signatures[0] is not an object");
  AIRLOCK_ASSIGN_OR_RETURN(b.signature, RequireBase64(s0, "sig", "dsseEnvelope.signatures[0]"));
  if (b.signature.empty()) return Bad("dsseEnvelope.signatures[0].sig is empty");
  if (const json* keyid = Member(s0, "keyid")) {
    if (!keyid->is_string()) return Bad("dsseEnvelope.signatures[0].keyid is not a string");
    b.keyid = keyid->get<std::string>();
  }
  return b;
}

std::string SerializeBundle(const Bundle& bundle) {
  ordered_json vm = ordered_json::object();
  if (!bundle.certificate_chain.empty()) {
    ordered_json certs = ordered_json::array();
    for (const auto& der : bundle.certificate_chain)
      certs.push_back({{"rawBytes", internal::Base64Encode(der)}});
    vm["x509CertificateChain"] = {{"certificates", certs}};
  } else {
    vm["publicKey"] = {{"hint", bundle.public_key_hint}};
  }
  vm["tlogEntries"] = ordered_json::array();
  ordered_json sig = ordered_json::object();
  sig["sig"] = internal::Base64Encode(bundle.signature);
  sig["keyid"] = bundle.keyid;
  ordered_json env = ordered_json::object();
  env["payload"] = internal::Base64Encode(bundle.payload);
  env["payloadType"] = bundle.payload_type;
  env["signatures"] = ordered_json::array({sig});
  ordered_json out = ordered_json::object();
  out["mediaType"] = bundle.media_type.empty() ? kBundleMediaType : bundle.media_type;
  out["verificationMaterial"] = vm;
  out["dsseEnvelope"] = env;
  // Base64 and the fixed strings are ASCII: dump cannot throw here.
  return out.dump();
}

std::string Pae(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEv1 " + std::to_string(payload_type.size()) + " ";
  out.append(payload_type);
  out += " " + std::to_string(payload.size()) + " ";
  out.append(payload);
  return out;
}

std::string PaeV02Compat(std::string_view payload_type, std::string_view payload) {
  std::string out = "DSSEV1 " + std::to_string(payload_type.size()) + " ";
  out.append(payload_type);
  out += " " + std::to_string(payload.size()) + " ";
  out += internal::PythonBytesRepr(payload);
  return out;
}

Result<Statement> ParseStatement(std::string_view payload) {
  if (payload.size() > kMaxBundleBytes) return BadStatement("larger than 64 MiB");
  AIRLOCK_ASSIGN_OR_RETURN(json j, ParseJson(payload, "in-toto statement"));
  if (!j.is_object()) return BadStatement("top level is not a JSON object");
  Statement st;
  const json* type = Member(j, "_type");
  if (!type || !type->is_string()) return BadStatement("missing _type");
  st.type = type->get<std::string>();
  if (st.type != kStatementType)
    return Unsupported("sign: unsupported in-toto statement type " + st.type + " (expected " +
                       kStatementType + ")");
  const json* pt = Member(j, "predicateType");
  if (!pt || !pt->is_string()) return BadStatement("missing predicateType");
  st.predicate_type = pt->get<std::string>();
  const json* subjects = Member(j, "subject");
  if (!subjects || !subjects->is_array()) return BadStatement("subject is not an array");
  for (const auto& s : *subjects) {
    if (!s.is_object()) return BadStatement("a subject is not an object");
    Subject sub;
    if (const json* name = Member(s, "name")) {
      if (!name->is_string()) return BadStatement("subject.name is not a string");
      sub.name = name->get<std::string>();
    }
    if (const json* digest = Member(s, "digest")) {
      if (!digest->is_object()) return BadStatement("subject.digest is not an object");
      if (const json* sha = Member(*digest, "sha256")) {
        if (!sha->is_string()) return BadStatement("subject.digest.sha256 is not a string");
        sub.sha256 = core::AsciiLower(sha->get<std::string>());
      }
    }
    st.subjects.push_back(std::move(sub));
  }
  const json* predicate = Member(j, "predicate");
  if (predicate && !predicate->is_object()) return BadStatement("predicate is not an object");
  // Re-serializing a parsed value: strings came from valid UTF-8 JSON, but stay safe anyway.
  try {
    st.predicate_json = predicate ? predicate->dump() : "{}";
  } catch (const json::exception&) {
    return BadStatement("predicate cannot be re-serialized");
  }
  return st;
}

Result<std::string> MakeStatement(const std::string& subject_name, const std::string& sha256_hex,
                                  const std::string& predicate_type,
                                  std::string_view predicate_json) {
  if (core::JsonNestingDepth(predicate_json, kMaxJsonDepth) > kMaxJsonDepth)
    return InvalidArgument("sign: predicate nested too deep");
  ordered_json predicate =
      ordered_json::parse(predicate_json.begin(), predicate_json.end(), nullptr, false);
  if (predicate.is_discarded() || !predicate.is_object())
    return InvalidArgument("sign: predicate is not a JSON object");
  ordered_json subject = ordered_json::object();
  subject["name"] = subject_name;
  subject["digest"] = {{"sha256", sha256_hex}};
  ordered_json st = ordered_json::object();
  st["_type"] = kStatementType;
  st["subject"] = ordered_json::array({subject});
  st["predicateType"] = predicate_type;
  st["predicate"] = std::move(predicate);
  try {
    return st.dump(2);
  } catch (const ordered_json::exception&) {
    return InvalidArgument("sign: a name in the statement is not valid UTF-8: " + subject_name);
  }
}

Result<std::string> ManifestPredicateJson(const Manifest& manifest) {
  const auto& ser = manifest.serialization;
  ordered_json serialization = ordered_json::object();
  serialization["method"] = ser.method == SerializationMethod::kFiles ? "files" : "shards";
  serialization["hash_type"] = "sha256";
  serialization["allow_symlinks"] = ser.allow_symlinks;
  // model_signing's predicate passes through a protobuf Struct, so numbers are doubles.
  if (ser.method == SerializationMethod::kShards)
    serialization["shard_size"] = static_cast<double>(ser.shard_size);
  if (!ser.ignore_paths.empty()) serialization["ignore_paths"] = ser.ignore_paths;
  ordered_json resources = ordered_json::array();
  for (const auto& r : manifest.resources) {
    ordered_json item = ordered_json::object();
    item["algorithm"] = r.algorithm;
    item["digest"] = r.digest_hex;
    item["name"] = r.name;
    resources.push_back(std::move(item));
  }
  ordered_json predicate = ordered_json::object();
  predicate["serialization"] = std::move(serialization);
  predicate["resources"] = std::move(resources);
  try {
    return predicate.dump();
  } catch (const ordered_json::exception&) {
    return InvalidArgument("sign: a file name in the model is not valid UTF-8");
  }
}

Result<std::string> StatementForManifest(const Manifest& manifest) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string predicate_text, ManifestPredicateJson(manifest));
  AIRLOCK_ASSIGN_OR_RETURN(std::string root, RootDigest(manifest.resources));
  return MakeStatement(manifest.model_name, root, kModelSigningPredicateType, predicate_text);
}

Result<SignedManifest> ManifestFromStatement(const Statement& statement) {
  SignedManifest out;
  Manifest& m = out.manifest;
  if (statement.predicate_type == kModelSigningPredicateTypeV01) {
    // v0.2: one subject per file, SHA-256, files method, no recorded parameters.
    out.v01_compat = true;
    m.model_name = "";
    m.serialization.method = SerializationMethod::kFiles;
    std::set<std::string> seen;
    for (const auto& s : statement.subjects) {
      if (!SafeRelativePath(s.name)) return BadStatement("unsafe subject name " + s.name);
      if (s.sha256.size() != 64 || !IsLowerHex(s.sha256))
        return BadStatement("subject " + s.name + " has no valid sha256 digest");
      if (!seen.insert(s.name).second) return BadStatement("duplicate subject " + s.name);
      m.resources.push_back({s.name, "sha256", s.sha256});
    }
    SortResources(m.resources);
    return out;
  }
  if (statement.predicate_type != kModelSigningPredicateType)
    return Unsupported("sign: unsupported predicate type " + statement.predicate_type +
                       " (expected " + kModelSigningPredicateType + ")");
  if (statement.subjects.size() != 1)
    return BadStatement("expected exactly one subject, got " +
                        std::to_string(statement.subjects.size()));
  const Subject& subject = statement.subjects[0];
  if (subject.sha256.size() != 64 || !IsLowerHex(subject.sha256))
    return BadStatement("subject has no valid sha256 digest");
  m.model_name = subject.name;
  out.root_digest = subject.sha256;

  json predicate = json::parse(statement.predicate_json, nullptr, false);
  if (predicate.is_discarded() || !predicate.is_object())
    return BadStatement("predicate is not an object");
  const json* ser = Member(predicate, "serialization");
  if (!ser || !ser->is_object()) return BadStatement("predicate.serialization is missing");
  const json* method = Member(*ser, "method");
  if (!method || !method->is_string()) return BadStatement("serialization.method is missing");
  std::string method_name = method->get<std::string>();
  if (method_name == "files") {
    m.serialization.method = SerializationMethod::kFiles;
  } else if (method_name == "shards") {
    m.serialization.method = SerializationMethod::kShards;
  } else {
    return Unsupported("sign: unsupported serialization method " + method_name);
  }
  const json* hash_type = Member(*ser, "hash_type");
  if (!hash_type || !hash_type->is_string())
    return BadStatement("serialization.hash_type is missing");
  if (hash_type->get<std::string>() != "sha256")
    return Unsupported("sign: unsupported hash type " + hash_type->get<std::string>() +
                       " (Airlock verifies sha256 manifests)");
  if (const json* sym = Member(*ser, "allow_symlinks")) {
    if (!sym->is_boolean()) return BadStatement("serialization.allow_symlinks is not a boolean");
    m.serialization.allow_symlinks = sym->get<bool>();
  }
  std::string expected_algorithm = "sha256";
  if (m.serialization.method == SerializationMethod::kShards) {
    const json* size = Member(*ser, "shard_size");
    if (!size || !size->is_number()) return BadStatement("serialization.shard_size is missing");
    double d = size->get<double>();
    if (!(d >= 1) || d > 9.0e15 || std::floor(d) != d)
      return BadStatement("serialization.shard_size is not a positive integer");
    m.serialization.shard_size = static_cast<std::uint64_t>(d);
    expected_algorithm = "sha256-sharded-" + std::to_string(m.serialization.shard_size);
  }
  if (const json* ignore = Member(*ser, "ignore_paths")) {
    if (!ignore->is_array()) return BadStatement("serialization.ignore_paths is not an array");
    for (const auto& p : *ignore) {
      if (!p.is_string()) return BadStatement("an ignore path is not a string");
      std::string path = p.get<std::string>();
      if (!SafeRelativePath(path)) return BadStatement("unsafe ignore path " + path);
      m.serialization.ignore_paths.push_back(path);
    }
  }
  const json* resources = Member(predicate, "resources");
  if (!resources || !resources->is_array()) return BadStatement("predicate.resources is missing");
  std::set<std::string> seen;
  for (const auto& r : *resources) {
    if (!r.is_object()) return BadStatement("a resource is not an object");
    const json* name = Member(r, "name");
    const json* algorithm = Member(r, "algorithm");
    const json* digest = Member(r, "digest");
    if (!name || !name->is_string() || !algorithm || !algorithm->is_string() || !digest ||
        !digest->is_string())
      return BadStatement("a resource lacks a string name, algorithm or digest");
    Resource res{name->get<std::string>(), algorithm->get<std::string>(),
                 core::AsciiLower(digest->get<std::string>())};
    if (res.algorithm != expected_algorithm)
      return Unsupported("sign: unsupported resource algorithm " + res.algorithm + " at " +
                         res.name + " (expected " + expected_algorithm + ")");
    if (res.digest_hex.size() != 64 || !IsLowerHex(res.digest_hex))
      return BadStatement("resource " + res.name + " has no valid sha256 digest");
    std::string path = res.name;
    if (m.serialization.method == SerializationMethod::kShards) {
      std::size_t c2 = path.rfind(':');
      std::size_t c1 =
          c2 == std::string::npos || c2 == 0 ? std::string::npos : path.rfind(':', c2 - 1);
      if (c1 == std::string::npos) return BadStatement("shard name without offsets " + res.name);
      path = path.substr(0, c1);
    }
    if (path != "." && !SafeRelativePath(path))
      return BadStatement("unsafe resource name " + res.name);
    if (!seen.insert(res.name).second) return BadStatement("duplicate resource " + res.name);
    m.resources.push_back(std::move(res));
  }
  // The root digest folds the resources in the order they are listed.
  AIRLOCK_ASSIGN_OR_RETURN(std::string root, RootDigest(m.resources));
  if (root != subject.sha256)
    return Corrupt("sign: manifest is inconsistent: root digest is " + subject.sha256 +
                   " but the included resources hash to " + root);
  SortResources(m.resources);
  return out;
}

}  // namespace airlock::sign
