// Signing and verifying models in the OpenSSF model-signing format (model_signing 1.x, private-key
// and certificate methods), plus signed in-toto attestations over the same model digest (used by
// `airlock scan --attest`). VerifyModel is the entry point for `--require-signature` in
// `airlock run/serve`: it returns a VerifyResult saying exactly what failed (wrong key, bad
// signature, untrusted certificate, unsupported predicate, extra/missing/modified files).
// Thread-safety: free functions; no shared state. Hashing uses its own worker threads.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "sign/bundle.h"
#include "sign/manifest.h"

namespace airlock::sign {

// `<dir>/model.sig` for a folder model, `<file>.sig` for a single-file model.
std::string DefaultSignaturePath(const std::string& model_path);

// A fresh EC key pair as PEM text (PKCS#8 private key, SubjectPublicKeyInfo public key).
// `curve` is "p256" or "p384". Errors: kInvalidArgument (another curve), kInternal.
struct KeyPairPem {
  std::string private_pem;
  std::string public_pem;
};
Result<KeyPairPem> GenerateKeyPair(const std::string& curve);

// Who signs: a private key (PEM), and for the certificate method its certificate plus the chain
// to embed (intermediates; model_signing's --certificate-chain when signing).
struct SigningKey {
  std::string private_key_path;
  std::string password;
  std::string signing_certificate_path;              // empty: private-key method
  std::vector<std::string> certificate_chain_paths;  // PEM files, leaf's issuer first
};

// Whom to trust: a public key (PEM/DER), or CA certificates (PEM files) for the certificate
// method. Exactly one of the two.
//
// Certificate policy (stricter than model_signing; docs/signing.md lists the differences): the
// leaf needs KeyUsage digitalSignature or ExtendedKeyUsage codeSigning, and when it carries either
// extension that extension must allow signing (a serverAuth-only TLS certificate is refused);
// every certificate of the chain must be valid at the verification time and carry at least a
// 112-bit key (OpenSSL security level 2: RSA/DSA >= 2048 bits) and, for EC, at least P-256. The
// verification time is now, because Airlock verifies no timestamp authority or transparency-log
// entry; `at_signing_time` evaluates at the leaf's notBefore instead (model_signing's rule, for
// archived signatures whose certificates have expired), with a warning, and never at a notBefore
// in the future.
//
// Keyless Sigstore bundles (a Fulcio certificate and Rekor entries) verify offline against
// `trust_config_path`, a Sigstore ClientTrustConfig or TrustedRoot JSON (model_signing's
// --trust_config), with the signer's `identity` (certificate SAN: email or URI) and
// `identity_provider` (OIDC issuer) both required; what is checked is listed in
// sign/internal/sigstore.h and docs/signing.md.
struct TrustAnchor {
  std::string public_key_path;
  std::vector<std::string> ca_paths;
  bool at_signing_time = false;
  std::string trust_config_path;
  std::string identity;
  std::string identity_provider;
};

// The in-toto predicate types of Airlock's own attestations.
inline constexpr char kScanAttestationType[] = "https://airlock.dev/attestations/scan/v1";
inline constexpr char kAssessmentAttestationType[] = "https://airlock.dev/assessment/v1";

struct SignOptions {
  SigningKey key;
  std::string signature_path;             // empty: DefaultSignaturePath(model)
  std::vector<std::string> ignore_paths;  // absolute, cwd-relative or model-relative
  bool ignore_git_paths = true;
  bool allow_symlinks = false;
  SerializationMethod method = SerializationMethod::kFiles;
  std::uint64_t shard_size = kDefaultShardSize;
  int threads = 0;
  bool progress = false;
};

struct SignResult {
  std::string signature_path;
  std::string model_name;
  std::string root_digest;  // sha256 hex, the statement subject
  std::size_t resources = 0;
};

// Hashes the model, builds the statement, signs it and writes the bundle (atomically). Errors:
// kInvalidArgument (keys, certificate/key mismatch, symlinks, empty model), kNotFound, kIo.
Result<SignResult> SignModel(const std::string& model_path, const SignOptions& options);

struct VerifyOptions {
  TrustAnchor trust;
  std::string signature_path;  // empty: DefaultSignaturePath(model)
  std::vector<std::string> ignore_paths;
  bool ignore_git_paths = true;
  bool ignore_unsigned_files = false;  // extra files on disk do not fail verification
  int threads = 0;
  bool progress = false;
  // The model is a single file already open on this descriptor (core::PinnedFile): it is hashed
  // through the descriptor, so a file renamed over the path meanwhile is not what gets checked.
  // -1: the path is opened.
  int model_fd = -1;
};

enum class VerifyFailure {
  kNone = 0,
  kMissingSignature,      // no signature file
  kMalformedBundle,       // not a parsable bundle / envelope / statement
  kUnsupported,           // media type, predicate type, serialization, keyless Sigstore bundle
  kWrongKey,              // the bundle names another key (hint) or the leaf key differs
  kBadSignature,          // ECDSA check failed
  kUntrustedCertificate,  // chain does not reach the named CA, or the leaf may not sign
  kInconsistentManifest,  // resources do not fold into the subject digest
  kModelMismatch,         // files on disk differ from the signed manifest
  kWrongPredicateType,    // an attestation of another kind than the one asked for
  kVerdictNotAccepted,    // a verified attestation whose verdict is not one the caller requires
  kUntrustedLogEntry,     // keyless: a Rekor entry or timestamp that does not verify offline
  kIdentityMismatch,      // keyless: the certificate names another identity or issuer
};
std::string_view VerifyFailureName(VerifyFailure f);

struct VerifyResult {
  bool verified = false;
  VerifyFailure failure = VerifyFailure::kNone;
  std::string message;  // one line saying what failed, or what was verified
  ManifestDiff diff;    // kModelMismatch: which files differ
  std::string model_name;
  std::string root_digest;
  std::string signer;  // certificate subject, or "key <hint prefix>"
  std::string predicate_type;
  std::size_t resources = 0;
  bool used_v02_compat = false;  // signature only checked with model_signing v0.2's PAE
  std::vector<std::string> warnings;
  std::vector<std::string> checks;  // keyless: what was verified (log entries, timestamps)
};

// Verifies the model at `model_path` against its signature. Returns a VerifyResult for every
// verification outcome (failure included); errors only for tool problems: kInvalidArgument
// (unreadable key / CA, no trust anchor), kNotFound (no model).
Result<VerifyResult> VerifyModel(const std::string& model_path, const VerifyOptions& options);

// Checks a bundle's signature against `trust` and returns its statement (any predicate) plus a
// VerifyResult whose failure is kNone when the signature holds. Tool errors as VerifyModel.
struct VerifiedBundle {
  VerifyResult result;
  Statement statement;
};
Result<VerifiedBundle> VerifyBundle(std::string_view bundle_json, const TrustAnchor& trust);

// Signs an in-toto statement (any predicate) into a bundle, returned as JSON text.
Result<std::string> SignStatement(std::string_view statement_json, const SigningKey& key);

// The model-signing root digest of a model (files method, SHA-256, git paths and `ignore_paths`
// ignored) and its subject name; what an attestation's subject names.
struct ModelDigest {
  std::string name;
  std::string root_digest;
};
Result<ModelDigest> ComputeModelDigest(const std::string& model_path,
                                       const std::vector<std::string>& ignore_paths,
                                       int threads = 0, bool progress = false);

// An attestation: `predicate_json` (an object) under `predicate_type`, about the model's digest,
// signed with `key`. Returns the bundle JSON. The digest leaves out `ignore_paths` (pass the
// attestation's own path when it lies inside the model), the git paths and the default signature
// path, so it equals the root digest of a model signature over the same files. Airlock adds the
// model-signing manifest to the predicate so that the attestation binds names and shape, not only
// bytes: "serialization" and "resources" (as in a model signature: every file's name and digest,
// "." for a single-file model) and "modelKind" ("file" or "folder"). Errors: kInvalidArgument (a
// predicate that is not an object or already uses one of these keys, an empty model), as
// ComputeModelDigest.
Result<std::string> AttestModel(const std::string& model_path,
                                const std::vector<std::string>& ignore_paths,
                                const std::string& predicate_type, std::string_view predicate_json,
                                const SigningKey& key);

// Verifies an attestation bundle: the signature (as VerifyBundle), the predicate type (when
// `expected_predicate_type` is not empty it must be equal: kWrongPredicateType otherwise, so a
// model signature or an assessment is not taken for a scan attestation), the embedded manifest
// (it must fold into the subject digest) and then the model on disk, file by file, by name: a
// renamed, added, removed or changed file, or a file where a folder was attested, fails with
// kModelMismatch and `result.diff` naming the files. The model is hashed with the recorded
// serialization, leaving out the recorded ignore paths plus `ignore_paths`, `attestation_path`,
// the git paths and the default signature path. An attestation without a resource list (made
// by earlier builds of Airlock) fails closed with kUnsupported: its digest alone does not say
// which file held which bytes. `result.predicate_type` names the predicate; `predicate_json`
// returns it (with the manifest keys).
struct VerifiedAttestation {
  VerifyResult result;
  std::string predicate_json;
};
Result<VerifiedAttestation> VerifyAttestation(const std::string& model_path,
                                              const std::string& attestation_path,
                                              const std::vector<std::string>& ignore_paths,
                                              const TrustAnchor& trust,
                                              const std::string& expected_predicate_type);

}  // namespace airlock::sign
