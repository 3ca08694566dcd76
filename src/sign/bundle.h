// The OpenSSF model-signing wire format: a Sigstore bundle (JSON, media type v0.3) holding a DSSE
// envelope whose payload is an in-toto Statement v1; the model-signing predicate lists every
// resource and the serialization that produced it. Parsing accepts what model_signing 0.2-1.1
// wrote (publicKey.hint or the older rawBytes/keyDetails, x509CertificateChain, the keyless
// "certificate" form, the v0.1 "Digests" predicate) and rejects anything malformed with a clean
// Status (never throws, bounded nesting). Building emits the same bytes model_signing emits.
// Thread-safety: pure functions on values.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "sign/manifest.h"

namespace airlock::sign {

inline constexpr char kBundleMediaType[] = "application/vnd.dev.sigstore.bundle.v0.3+json";
// The same v0.3 bundle under the parameter spelling some signers still write; read with exactly
// v0.3's rules. Versions 0.1 and 0.2 (other rules: no inclusion proof needed) stay refused.
inline constexpr char kBundleMediaTypeV03Alias[] =
    "application/vnd.dev.sigstore.bundle+json;version=0.3";
inline constexpr char kInTotoPayloadType[] = "application/vnd.in-toto+json";
inline constexpr char kStatementType[] = "https://in-toto.io/Statement/v1";
inline constexpr char kModelSigningPredicateType[] = "https://model_signing/signature/v1.0";
// model_signing v0.2 wrote one subject per file and this predicate type; still accepted.
inline constexpr char kModelSigningPredicateTypeV01[] = "https://model_signing/Digests/v0.1";
// Largest signature file we read.
inline constexpr std::size_t kMaxBundleBytes = 64u << 20;

// One Rekor transparency-log entry of a keyless bundle (verificationMaterial.tlogEntries[i]),
// decoded but not yet checked (sign/internal/sigstore.h checks it against a trusted root).
struct TlogEntry {
  std::int64_t log_index = -1;
  std::string log_key_id;  // raw bytes of logId.keyId (SHA-256 of the log's public key)
  std::string kind;        // kindVersion.kind, e.g. "dsse"
  std::string kind_version;
  std::int64_t integrated_time = -1;   // seconds since the epoch; -1 when absent
  std::string signed_entry_timestamp;  // inclusionPromise.signedEntryTimestamp (DER); may be empty
  bool has_inclusion_proof = false;
  std::int64_t proof_log_index = -1;
  std::int64_t tree_size = -1;
  std::string root_hash;                  // raw 32 bytes
  std::vector<std::string> proof_hashes;  // raw 32 bytes each
  std::string checkpoint;                 // the signed note text; may be empty
  std::string canonicalized_body;         // the entry body (JSON bytes, base64-decoded)
};

struct Bundle {
  std::string media_type;
  // verificationMaterial: exactly one of these forms is set.
  bool has_public_key = false;
  std::string public_key_hint;                 // hex; empty when absent (pre-1.1 bundles)
  std::vector<std::string> certificate_chain;  // DER, leaf first (x509CertificateChain)
  std::string keyless_certificate;             // DER of verificationMaterial.certificate (Sigstore)
  bool has_tlog_entries = false;               // a non-empty tlogEntries list
  std::vector<TlogEntry> tlog_entries;         // at most 16
  std::vector<std::string> rfc3161_timestamps;  // DER TimeStampResp, at most 16
  // dsseEnvelope
  std::string payload_type;
  std::string payload;    // base64-decoded
  std::string signature;  // signatures[0].sig, base64-decoded (DER ECDSA)
  std::string keyid;
};

// Parses a bundle. Errors: kCorrupt (not JSON, wrong types, bad base64, no dsseEnvelope, no
// signature), kUnsupported (a message-signature bundle, an unknown verification material).
Result<Bundle> ParseBundle(std::string_view json_text);

// Compact JSON exactly as model_signing writes it (key order included), without trailing newline.
std::string SerializeBundle(const Bundle& bundle);

// DSSE pre-authentication encoding: "DSSEv1 <len> <type> <len> <payload>".
std::string Pae(std::string_view payload_type, std::string_view payload);
// model_signing v0.2's buggy variant: "DSSEV1 <len> <type> <len> b'<python repr of payload>'".
std::string PaeV02Compat(std::string_view payload_type, std::string_view payload);

struct Subject {
  std::string name;
  std::string sha256;  // lowercase hex; empty when the subject has no sha256 digest
};

struct Statement {
  std::string type;
  std::vector<Subject> subjects;
  std::string predicate_type;
  std::string predicate_json;  // the predicate object, re-serialized compactly
};

// Parses an in-toto statement. Errors: kCorrupt (not JSON, missing/ill-typed fields),
// kUnsupported (a _type other than Statement v1).
Result<Statement> ParseStatement(std::string_view payload);

// Builds a statement with one subject, byte-formatted like model_signing's (2-space indented
// protobuf JSON, no trailing newline). `predicate_json` must be a JSON object. Errors:
// kInvalidArgument (predicate not an object, a name that is not UTF-8).
Result<std::string> MakeStatement(const std::string& subject_name, const std::string& sha256_hex,
                                  const std::string& predicate_type,
                                  std::string_view predicate_json);

// The model-signing predicate of a manifest: {"serialization": {...}, "resources": [{"algorithm",
// "digest", "name"}...]}, compact JSON. Errors: kInvalidArgument (a name that is not UTF-8).
Result<std::string> ManifestPredicateJson(const Manifest& manifest);

// The model-signing statement for a manifest (subject = model name + root digest).
Result<std::string> StatementForManifest(const Manifest& manifest);

// The signed manifest in a statement: checks the predicate type (v1.0 or the v0.1 compat form),
// exactly one subject, the serialization parameters, and that the resources fold into the subject
// digest. Errors: kUnsupported (another predicate type, serialization method or hash), kCorrupt
// (ill-formed resources, root digest mismatch: "manifest is inconsistent").
struct SignedManifest {
  Manifest manifest;
  std::string root_digest;  // subject digest ("" for the v0.1 compat form)
  bool v01_compat = false;  // the v0.2 "Digests/v0.1" predicate
};
Result<SignedManifest> ManifestFromStatement(const Statement& statement);

}  // namespace airlock::sign
