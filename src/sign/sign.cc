#include "sign/sign.h"

#include <sys/stat.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "core/file.h"
#include "sign/internal/crypto.h"
#include "sign/internal/sigstore.h"

namespace airlock::sign {
namespace {

namespace fs = std::filesystem;
using internal::PkeyPtr;
using internal::X509Ptr;

Result<std::string> ReadInput(const std::string& path, const char* what) {
  auto text = core::ReadSmallFile(path, kMaxBundleBytes);
  if (!text.has_value())
    return InvalidArgument(std::string("sign: cannot read ") + what + " at " + path + ": " +
                           text.error().message());
  return text;
}

Result<std::vector<X509Ptr>> LoadCertFiles(const std::vector<std::string>& paths,
                                           const char* what) {
  std::vector<X509Ptr> out;
  for (const auto& p : paths) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadInput(p, what));
    auto certs = internal::LoadPemCertificates(pem);
    if (!certs.has_value())
      return InvalidArgument(std::string("sign: no PEM certificate in ") + what + " at " + p);
    for (auto& c : *certs) out.push_back(std::move(c));
  }
  return out;
}

std::string JoinNames(const std::vector<std::string>& names, std::size_t max = 10) {
  std::string out;
  for (std::size_t i = 0; i < names.size() && i < max; ++i) {
    if (i) out += ", ";
    out += names[i];
  }
  if (names.size() > max) out += ", ... (" + std::to_string(names.size() - max) + " more)";
  return out;
}

VerifyResult Fail(VerifyFailure f, std::string message) {
  VerifyResult r;
  r.failure = f;
  r.message = std::move(message);
  return r;
}

// "sign: model does not match <what>: 1 modified file (a); 2 missing files (b, c)".
std::string MismatchMessage(const ManifestDiff& diff, const char* what) {
  std::string msg = std::string("sign: model does not match ") + what + ":";
  const char* sep = " ";
  auto add = [&](const std::vector<std::string>& names, const char* one, const char* many) {
    if (names.empty()) return;
    msg += sep + std::to_string(names.size()) + " " + (names.size() == 1 ? one : many) + " (" +
           JoinNames(names) + ")";
    sep = "; ";
  };
  add(diff.modified_files, "modified file", "modified files");
  add(diff.missing_files, "missing file", "missing files");
  add(diff.extra_files, "extra (unsigned) file", "extra (unsigned) files");
  return msg;
}

bool IsDirectory(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

VerifyFailure FailureFor(const Status& s) {
  if (s.code() == StatusCode::kUnsupported) return VerifyFailure::kUnsupported;
  if (s.message().find("manifest is inconsistent") != std::string::npos)
    return VerifyFailure::kInconsistentManifest;
  return VerifyFailure::kMalformedBundle;
}

// Signs `payload` (an in-toto statement) with `key` into a bundle.
Result<Bundle> SignPayload(const std::string& payload, const SigningKey& key) {
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadInput(key.private_key_path, "private key"));
  AIRLOCK_ASSIGN_OR_RETURN(PkeyPtr pkey, internal::LoadPrivateKey(pem, key.password));
  AIRLOCK_ASSIGN_OR_RETURN(const EVP_MD* md, internal::HashForKey(pkey.get()));
  Bundle b;
  b.media_type = kBundleMediaType;
  b.payload_type = kInTotoPayloadType;
  b.payload = payload;
  if (!key.signing_certificate_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::vector<X509Ptr> leaf,
                             LoadCertFiles({key.signing_certificate_path}, "signing certificate"));
    EVP_PKEY* cert_key = X509_get0_pubkey(leaf[0].get());
    if (!cert_key || EVP_PKEY_eq(cert_key, pkey.get()) != 1)
      return InvalidArgument(
          "sign: the signing certificate's public key does not match the private key");
    b.certificate_chain.push_back(internal::DerOf(leaf[0].get()));
    AIRLOCK_ASSIGN_OR_RETURN(std::vector<X509Ptr> chain,
                             LoadCertFiles(key.certificate_chain_paths, "certificate chain"));
    for (auto& c : chain) b.certificate_chain.push_back(internal::DerOf(c.get()));
  } else {
    if (!key.certificate_chain_paths.empty())
      return InvalidArgument("sign: --certificate-chain needs --signing-certificate");
    AIRLOCK_ASSIGN_OR_RETURN(b.public_key_hint, internal::PublicKeyHint(pkey.get()));
    b.has_public_key = true;
  }
  AIRLOCK_ASSIGN_OR_RETURN(b.signature,
                           internal::SignMessage(pkey.get(), md, Pae(b.payload_type, payload)));
  return b;
}

}  // namespace

std::string_view VerifyFailureName(VerifyFailure f) {
  switch (f) {
    case VerifyFailure::kNone:
      return "none";
    case VerifyFailure::kMissingSignature:
      return "missing-signature";
    case VerifyFailure::kMalformedBundle:
      return "malformed-bundle";
    case VerifyFailure::kUnsupported:
      return "unsupported";
    case VerifyFailure::kWrongKey:
      return "wrong-key";
    case VerifyFailure::kBadSignature:
      return "bad-signature";
    case VerifyFailure::kUntrustedCertificate:
      return "untrusted-certificate";
    case VerifyFailure::kInconsistentManifest:
      return "inconsistent-manifest";
    case VerifyFailure::kModelMismatch:
      return "model-mismatch";
    case VerifyFailure::kWrongPredicateType:
      return "wrong-predicate-type";
    case VerifyFailure::kVerdictNotAccepted:
      return "verdict-not-accepted";
    case VerifyFailure::kUntrustedLogEntry:
      return "untrusted-log-entry";
    case VerifyFailure::kIdentityMismatch:
      return "identity-mismatch";
  }
  return "unknown";
}

std::string DefaultSignaturePath(const std::string& model_path) {
  std::string p = model_path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  std::error_code ec;
  if (fs::is_directory(p, ec)) return (fs::path(p) / "model.sig").string();
  return p + ".sig";
}

Result<KeyPairPem> GenerateKeyPair(const std::string& curve) {
  std::string name = curve == "p256" || curve == "P-256"   ? "P-256"
                     : curve == "p384" || curve == "P-384" ? "P-384"
                                                           : "";
  AIRLOCK_ASSIGN_OR_RETURN(auto pair, internal::GenerateEcKey(name));
  return KeyPairPem{std::move(pair.first), std::move(pair.second)};
}

Result<std::string> SignStatement(std::string_view statement_json, const SigningKey& key) {
  AIRLOCK_ASSIGN_OR_RETURN(Bundle b, SignPayload(std::string(statement_json), key));
  return SerializeBundle(b);
}

Result<SignResult> SignModel(const std::string& model_path, const SignOptions& options) {
  std::string sig_path =
      options.signature_path.empty() ? DefaultSignaturePath(model_path) : options.signature_path;
  std::vector<std::string> ignore = options.ignore_paths;
  ignore.push_back(sig_path);
  SerializationOptions ser;
  ser.method = options.method;
  ser.shard_size = options.shard_size;
  ser.allow_symlinks = options.allow_symlinks;
  ser.ignore_paths = ResolveIgnorePaths(model_path, ignore, options.ignore_git_paths);
  ser.threads = options.threads;
  ser.progress = options.progress;
  // Load the key before hashing so that a typo does not cost a full pass over the model.
  AIRLOCK_ASSIGN_OR_RETURN(std::string pem, ReadInput(options.key.private_key_path, "private key"));
  AIRLOCK_TRY(internal::LoadPrivateKey(pem, options.key.password).status());
  AIRLOCK_ASSIGN_OR_RETURN(Manifest m, HashModel(model_path, ser));
  if (m.resources.empty())
    return InvalidArgument("sign: model at " + model_path +
                           " contains no regular files after applying exclusions");
  AIRLOCK_ASSIGN_OR_RETURN(std::string statement, StatementForManifest(m));
  AIRLOCK_ASSIGN_OR_RETURN(Bundle b, SignPayload(statement, options.key));
  AIRLOCK_TRY(core::WriteFileAtomic(sig_path, SerializeBundle(b)));
  SignResult r;
  r.signature_path = sig_path;
  r.model_name = m.model_name;
  AIRLOCK_ASSIGN_OR_RETURN(r.root_digest, RootDigest(m.resources));
  r.resources = m.resources.size();
  return r;
}

Result<VerifiedBundle> VerifyBundle(std::string_view bundle_json, const TrustAnchor& trust) {
  VerifiedBundle out;
  VerifyResult& r = out.result;
  int anchors_given =
      !trust.public_key_path.empty() + !trust.ca_paths.empty() + !trust.trust_config_path.empty();
  if (anchors_given == 0)
    return InvalidArgument(
        "sign: verification needs --key PUB, --certificate-chain CA or --trust-config FILE");
  if (anchors_given > 1)
    return InvalidArgument(
        "sign: give one of --key, --certificate-chain or --trust-config, not several");
  if (!trust.trust_config_path.empty() &&
      (trust.identity.empty() || trust.identity_provider.empty()))
    return InvalidArgument("sign: --trust-config needs --identity and --identity-provider");

  // Trust material first: an unreadable key is a usage error, whatever the bundle holds.
  PkeyPtr given_key;
  std::vector<X509Ptr> anchors;
  std::optional<internal::TrustedRoot> trusted_root;
  if (!trust.trust_config_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadInput(trust.trust_config_path, "trust config"));
    AIRLOCK_ASSIGN_OR_RETURN(trusted_root, internal::ParseTrustedRoot(text));
  } else if (!trust.public_key_path.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string text, ReadInput(trust.public_key_path, "public key"));
    AIRLOCK_ASSIGN_OR_RETURN(given_key, internal::LoadPublicKey(text));
  } else {
    AIRLOCK_ASSIGN_OR_RETURN(anchors, LoadCertFiles(trust.ca_paths, "CA certificate"));
  }

  auto parsed = ParseBundle(bundle_json);
  if (!parsed.has_value()) {
    r = Fail(parsed.error().code() == StatusCode::kUnsupported ? VerifyFailure::kUnsupported
                                                               : VerifyFailure::kMalformedBundle,
             parsed.error().message());
    return out;
  }
  const Bundle& b = *parsed;
  if (b.media_type != kBundleMediaType && b.media_type != kBundleMediaTypeV03Alias) {
    r = Fail(VerifyFailure::kUnsupported, "sign: unsupported bundle media type '" + b.media_type +
                                              "' (expected " + kBundleMediaType + ")");
    return out;
  }
  if (b.payload_type != kInTotoPayloadType) {
    r = Fail(VerifyFailure::kUnsupported, "sign: unsupported DSSE payload type '" + b.payload_type +
                                              "' (expected " + kInTotoPayloadType + ")");
    return out;
  }

  EVP_PKEY* key = nullptr;
  PkeyPtr leaf_key_holder;
  if (trusted_root) {
    internal::KeylessCheck k =
        internal::VerifyKeylessMaterial(b, *trusted_root, trust.identity, trust.identity_provider);
    if (k.failure != VerifyFailure::kNone) {
      r = Fail(k.failure, k.message);
      return out;
    }
    leaf_key_holder.reset(X509_get_pubkey(k.leaf.get()));
    key = leaf_key_holder.get();
    r.signer = k.identity + " (issuer " + k.issuer + ", Sigstore keyless)";
    r.checks = std::move(k.notes);
  } else if (given_key) {
    key = given_key.get();
    AIRLOCK_ASSIGN_OR_RETURN(std::string hint, internal::PublicKeyHint(key));
    if (b.has_public_key) {
      if (b.public_key_hint.empty()) {
        r.warnings.push_back(
            "the signature uses the older format without a public key hint; re-sign to add one");
      } else if (b.public_key_hint != hint) {
        r = Fail(VerifyFailure::kWrongKey, "sign: wrong key: the signature was made with key " +
                                               b.public_key_hint.substr(0, 16) +
                                               "..., not with the given key " + hint.substr(0, 16) +
                                               "...");
        return out;
      }
    } else {
      std::string der =
          b.certificate_chain.empty() ? b.keyless_certificate : b.certificate_chain[0];
      auto leaf = internal::ParseDerCertificate(der);
      if (!leaf.has_value()) {
        r = Fail(VerifyFailure::kMalformedBundle, leaf.error().message());
        return out;
      }
      EVP_PKEY* leaf_key = X509_get0_pubkey(leaf->get());
      if (!leaf_key || EVP_PKEY_eq(leaf_key, key) != 1) {
        r = Fail(VerifyFailure::kWrongKey, "sign: wrong key: the bundle's signing certificate " +
                                               internal::SubjectOf(leaf->get()) +
                                               " holds another key");
        return out;
      }
      r.signer = internal::SubjectOf(leaf->get()) + " (checked against the given key)";
    }
    if (r.signer.empty()) r.signer = "key " + hint.substr(0, 16);
  } else {
    if (b.has_public_key) {
      r = Fail(VerifyFailure::kUntrustedCertificate,
               "sign: the signature was made with a bare key and carries no certificate chain; "
               "verify it with --key");
      return out;
    }
    if (b.certificate_chain.empty()) {
      r = Fail(VerifyFailure::kUnsupported,
               "sign: a Sigstore keyless bundle (Fulcio certificate + Rekor entry) verifies "
               "against a Sigstore trusted root: use --trust-config FILE with --identity and "
               "--identity-provider");
      return out;
    }
    std::vector<X509Ptr> chain;
    for (const auto& der : b.certificate_chain) {
      auto c = internal::ParseDerCertificate(der);
      if (!c.has_value()) {
        r = Fail(VerifyFailure::kMalformedBundle, c.error().message());
        return out;
      }
      chain.push_back(std::move(*c));
    }
    std::vector<X509Ptr> intermediates;
    for (std::size_t i = 1; i < chain.size(); ++i) intermediates.push_back(std::move(chain[i]));
    Status s = internal::VerifyCertificateChain(chain[0].get(), intermediates, anchors,
                                                trust.at_signing_time);
    if (!s.ok()) {
      r = Fail(VerifyFailure::kUntrustedCertificate, s.message());
      return out;
    }
    if (trust.at_signing_time)
      r.warnings.push_back(
          "certificate validity checked at the signing certificate's notBefore "
          "(--at-signing-time), a time its holder chose, not at a trusted time");
    if (b.has_tlog_entries)
      r.warnings.push_back(
          "the bundle's transparency-log entries are not verified by Airlock; certificate "
          "validity was not checked at their time");
    leaf_key_holder.reset(X509_get_pubkey(chain[0].get()));
    key = leaf_key_holder.get();
    r.signer = internal::SubjectOf(chain[0].get());
  }

  auto md = internal::HashForKey(key);
  if (!md.has_value()) {
    r = Fail(VerifyFailure::kUnsupported, "sign: the signing key is not ECDSA P-256/P-384/P-521");
    return out;
  }
  bool ok = internal::VerifyMessage(key, *md, Pae(b.payload_type, b.payload), b.signature);
  // model_signing v0.2 signed a mis-built PAE (and always SHA-256 for certificates). It never
  // made keyless bundles, so a keyless signature gets the standard PAE only.
  if (!ok && !trusted_root) {
    std::string compat = PaeV02Compat(b.payload_type, b.payload);
    ok = internal::VerifyMessage(key, *md, compat, b.signature) ||
         (*md != EVP_sha256() && internal::VerifyMessage(key, EVP_sha256(), compat, b.signature));
    r.used_v02_compat = ok;
  }
  if (!ok) {
    std::string signer = r.signer;
    r = Fail(VerifyFailure::kBadSignature,
             "sign: bad signature: the DSSE signature does not match the signed statement "
             "(the signature file was altered, or made by another key than " +
                 signer + ")");
    return out;
  }
  if (r.used_v02_compat)
    r.warnings.push_back("signature made by model_signing v0.2 (legacy PAE encoding)");
  auto st = ParseStatement(b.payload);
  if (!st.has_value()) {
    std::string signer = r.signer;
    r = Fail(FailureFor(st.error()), st.error().message());
    r.signer = signer;
    return out;
  }
  out.statement = std::move(*st);
  r.predicate_type = out.statement.predicate_type;
  r.verified = true;
  return out;
}

Result<VerifyResult> VerifyModel(const std::string& model_path, const VerifyOptions& options) {
  struct stat st {};
  if (options.model_fd < 0 && ::lstat(model_path.c_str(), &st) != 0)
    return NotFound("sign: no such model at " + model_path);
  std::string sig_path =
      options.signature_path.empty() ? DefaultSignaturePath(model_path) : options.signature_path;
  auto text = core::ReadSmallFile(sig_path, kMaxBundleBytes);
  if (!text.has_value()) {
    if (text.error().code() == StatusCode::kNotFound)
      return Fail(VerifyFailure::kMissingSignature, "sign: no signature file at " + sig_path);
    if (text.error().code() == StatusCode::kLimitExceeded)
      return Fail(VerifyFailure::kMalformedBundle,
                  "sign: malformed bundle: signature file larger than 64 MiB at " + sig_path);
    return InvalidArgument("sign: cannot read signature at " + sig_path + ": " +
                           text.error().message());
  }
  AIRLOCK_ASSIGN_OR_RETURN(VerifiedBundle vb, VerifyBundle(*text, options.trust));
  VerifyResult r = std::move(vb.result);
  if (!r.verified) return r;
  r.verified = false;

  auto signed_manifest = ManifestFromStatement(vb.statement);
  if (!signed_manifest.has_value()) {
    VerifyResult f = Fail(FailureFor(signed_manifest.error()), signed_manifest.error().message());
    f.signer = r.signer;
    f.predicate_type = r.predicate_type;
    return f;
  }
  const Manifest& expected = signed_manifest->manifest;
  r.model_name = expected.model_name;
  r.root_digest = signed_manifest->root_digest;
  r.resources = expected.resources.size();

  std::vector<std::string> ignore = options.ignore_paths;
  ignore.push_back(sig_path);
  SerializationOptions ser = expected.serialization;
  std::vector<std::string> extra_ignores =
      ResolveIgnorePaths(model_path, ignore, options.ignore_git_paths);
  ser.ignore_paths.insert(ser.ignore_paths.end(), extra_ignores.begin(), extra_ignores.end());
  ser.threads = options.threads;
  ser.progress = options.progress;
  ser.model_fd = options.model_fd;
  auto actual = HashModel(model_path, ser);
  if (!actual.has_value()) {
    if (actual.error().code() == StatusCode::kNotFound) return actual.error();
    r.failure = VerifyFailure::kModelMismatch;
    r.message = "sign: model cannot be serialized as signed: " + actual.error().message();
    return r;
  }
  if (signed_manifest->v01_compat) {
    AIRLOCK_ASSIGN_OR_RETURN(r.root_digest, RootDigest(actual->resources));
  }
  r.diff = CompareManifests(expected.resources, actual->resources);
  if (options.ignore_unsigned_files) r.diff.extra_files.clear();
  if (!r.diff.empty()) {
    r.failure = VerifyFailure::kModelMismatch;
    r.message = MismatchMessage(r.diff, "its signature");
    return r;
  }
  r.verified = true;
  r.message = "verified " + std::to_string(r.resources) +
              (expected.serialization.method == SerializationMethod::kShards
                   ? (r.resources == 1 ? " shard" : " shards")
                   : (r.resources == 1 ? " file" : " files")) +
              ", root sha256:" + r.root_digest + ", signed by " + r.signer;
  return r;
}

Result<ModelDigest> ComputeModelDigest(const std::string& model_path,
                                       const std::vector<std::string>& ignore_paths, int threads,
                                       bool progress) {
  SerializationOptions ser;
  ser.ignore_paths = ResolveIgnorePaths(model_path, ignore_paths, true);
  ser.threads = threads;
  ser.progress = progress;
  AIRLOCK_ASSIGN_OR_RETURN(Manifest m, HashModel(model_path, ser));
  ModelDigest d;
  d.name = m.model_name;
  AIRLOCK_ASSIGN_OR_RETURN(d.root_digest, RootDigest(m.resources));
  return d;
}

Result<std::string> AttestModel(const std::string& model_path,
                                const std::vector<std::string>& ignore_paths,
                                const std::string& predicate_type, std::string_view predicate_json,
                                const SigningKey& key) {
  nlohmann::json predicate = nlohmann::json::parse(predicate_json, nullptr, false);
  if (predicate.is_discarded() || !predicate.is_object())
    return InvalidArgument("sign: an attestation predicate must be a JSON object");
  for (const char* reserved : {"serialization", "resources", "modelKind"})
    if (predicate.contains(reserved))
      return InvalidArgument(std::string("sign: the attestation predicate may not set \"") +
                             reserved + "\" (Airlock records the model's manifest there)");
  std::vector<std::string> ignore = ignore_paths;
  ignore.push_back(DefaultSignaturePath(model_path));
  SerializationOptions ser;
  ser.ignore_paths = ResolveIgnorePaths(model_path, ignore, true);
  AIRLOCK_ASSIGN_OR_RETURN(Manifest m, HashModel(model_path, ser));
  if (m.resources.empty())
    return InvalidArgument("sign: model at " + model_path +
                           " contains no regular files after applying exclusions");
  AIRLOCK_ASSIGN_OR_RETURN(std::string manifest_text, ManifestPredicateJson(m));
  nlohmann::json manifest = nlohmann::json::parse(manifest_text, nullptr, false);
  if (!manifest.is_object()) return Internal("sign: cannot re-read the manifest predicate");
  predicate["modelKind"] = IsDirectory(model_path) ? "folder" : "file";
  predicate["serialization"] = std::move(manifest["serialization"]);
  predicate["resources"] = std::move(manifest["resources"]);
  std::string predicate_text;
  try {
    predicate_text = predicate.dump();
  } catch (const nlohmann::json::exception&) {
    return InvalidArgument("sign: the attestation predicate is not valid UTF-8");
  }
  AIRLOCK_ASSIGN_OR_RETURN(std::string root, RootDigest(m.resources));
  AIRLOCK_ASSIGN_OR_RETURN(std::string statement,
                           MakeStatement(m.model_name, root, predicate_type, predicate_text));
  return SignStatement(statement, key);
}

Result<VerifiedAttestation> VerifyAttestation(const std::string& model_path,
                                              const std::string& attestation_path,
                                              const std::vector<std::string>& ignore_paths,
                                              const TrustAnchor& trust,
                                              const std::string& expected_predicate_type) {
  VerifiedAttestation out;
  struct stat st {};
  if (::lstat(model_path.c_str(), &st) != 0)
    return NotFound("sign: no such model at " + model_path);
  auto text = core::ReadSmallFile(attestation_path, kMaxBundleBytes);
  if (!text.has_value()) {
    out.result = Fail(
        VerifyFailure::kMissingSignature,
        "sign: cannot read attestation at " + attestation_path + ": " + text.error().message());
    return out;
  }
  AIRLOCK_ASSIGN_OR_RETURN(VerifiedBundle vb, VerifyBundle(*text, trust));
  VerifyResult& r = out.result;
  r = std::move(vb.result);
  if (!r.verified) return out;
  r.verified = false;
  const Statement& s = vb.statement;
  auto fail = [&r](VerifyFailure f, std::string message) {
    r.failure = f;
    r.message = std::move(message);
  };
  if (!expected_predicate_type.empty() && s.predicate_type != expected_predicate_type) {
    fail(VerifyFailure::kWrongPredicateType,
         "sign: expected a " + expected_predicate_type + " attestation, got " +
             (s.predicate_type == kModelSigningPredicateType ||
                      s.predicate_type == kModelSigningPredicateTypeV01
                  ? "a model signature (" + s.predicate_type + "); verify it without --attestation"
                  : "predicate type " + s.predicate_type));
    return out;
  }
  if (s.subjects.size() != 1 || s.subjects[0].sha256.empty()) {
    fail(VerifyFailure::kMalformedBundle,
         "sign: attestation must have exactly one subject with a sha256 digest");
    return out;
  }
  r.model_name = s.subjects[0].name;
  r.root_digest = s.subjects[0].sha256;
  out.predicate_json = s.predicate_json;

  // The manifest Airlock embeds: the same checks as a model signature's predicate.
  nlohmann::json predicate = nlohmann::json::parse(s.predicate_json, nullptr, false);
  if (!predicate.is_object() || !predicate.contains("resources")) {
    fail(VerifyFailure::kUnsupported,
         "sign: the attestation lists no resources (made by an older Airlock): it binds the "
         "model's bytes but not its file names, so it cannot be trusted; attest the model again");
    return out;
  }
  const auto kind = predicate.find("modelKind");
  if (kind == predicate.end() || !kind->is_string() || (*kind != "file" && *kind != "folder")) {
    fail(VerifyFailure::kMalformedBundle,
         "sign: the attestation's modelKind is missing or not \"file\"/\"folder\"");
    return out;
  }
  Statement as_manifest = s;
  as_manifest.predicate_type = kModelSigningPredicateType;
  auto signed_manifest = ManifestFromStatement(as_manifest);
  if (!signed_manifest.has_value()) {
    fail(FailureFor(signed_manifest.error()), signed_manifest.error().message());
    return out;
  }
  const Manifest& expected = signed_manifest->manifest;
  r.resources = expected.resources.size();
  bool attested_folder = *kind == "folder";
  if (attested_folder != IsDirectory(model_path)) {
    fail(VerifyFailure::kModelMismatch,
         std::string("sign: the attestation is about ") +
             (attested_folder ? "a folder, but " : "a single file, but ") + model_path +
             (attested_folder ? " is a file" : " is a folder"));
    return out;
  }

  std::vector<std::string> ignore = ignore_paths;
  ignore.push_back(attestation_path);
  ignore.push_back(DefaultSignaturePath(model_path));
  SerializationOptions ser = expected.serialization;
  std::vector<std::string> extra_ignores = ResolveIgnorePaths(model_path, ignore, true);
  ser.ignore_paths.insert(ser.ignore_paths.end(), extra_ignores.begin(), extra_ignores.end());
  auto actual = HashModel(model_path, ser);
  if (!actual.has_value()) {
    if (actual.error().code() == StatusCode::kNotFound) return actual.error();
    fail(VerifyFailure::kModelMismatch,
         "sign: model cannot be serialized as attested: " + actual.error().message());
    return out;
  }
  r.diff = CompareManifests(expected.resources, actual->resources);
  if (!r.diff.empty()) {
    fail(VerifyFailure::kModelMismatch, MismatchMessage(r.diff, "its attestation"));
    return out;
  }
  r.verified = true;
  r.message = "attestation " + s.predicate_type + " verified for " + std::to_string(r.resources) +
              (r.resources == 1 ? " file" : " files") + ", root sha256:" + r.root_digest +
              ", signed by " + r.signer;
  return out;
}

}  // namespace airlock::sign
