// Offline verification of Sigstore keyless bundles (a Fulcio certificate plus Rekor transparency-
// log entries and optional RFC 3161 timestamps) against a trusted root: the TrustedRoot /
// ClientTrustConfig JSON that sigstore clients and model_signing's --trust_config read.
//
// What is checked, all without a network: each Rekor entry's body names this bundle's signature,
// certificate and payload; its inclusion proof folds into the proof's root hash (RFC 9162) and
// that root is signed by the log's key in the checkpoint; its signed entry timestamp (SET) is the
// log's signature over the body, integrated time, log id and index. Each RFC 3161 timestamp must
// be signed by a timestamp authority of the trusted root over the DSSE signature. A Rekor
// integrated time counts as a signing time only when its SET verifies; a timestamp's time only
// when it verifies. The Fulcio certificate must chain to a certificate authority of the trusted
// root at every signing time (and the authority and log keys be valid then, per validFor), be a
// signing leaf (KeyUsage digitalSignature, ExtendedKeyUsage codeSigning, not a CA), carry embedded
// SCTs that each verify against a CT log of the trusted root valid at the SCT's time (at least one;
// required whenever the trusted root lists ctlogs), name the expected identity in its
// SubjectAltName and the expected OIDC issuer in its Fulcio issuer extension
// (1.3.6.1.4.1.57264.1.8, or the older .1.1; both present must agree; a duplicated extension
// fails). Every Rekor entry needs an inclusion proof with a checkpoint (bundle v0.3), and its body
// must be a dsse 0.0.1 entry with exactly one signature, the bundle's, whose verifier is exactly
// the bundle's certificate. Not checked: Rekor's envelopeHash (it hashes the envelope as Rekor
// re-encoded it, which a client cannot reproduce; sigstore-js does not check it either). Failures
// name what failed. Thread-safety: pure functions on values.
#pragma once

#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "sign/bundle.h"
#include "sign/internal/crypto.h"
#include "sign/sign.h"

namespace airlock::sign::internal {

struct TrustedLogKey {
  std::string key_id;  // raw bytes (SHA-256 of the DER public key)
  PkeyPtr key;
  std::time_t valid_from = 0;
  std::time_t valid_until = 0;  // 0: open-ended
  std::string base_url;
};

struct TrustedAuthority {      // a Fulcio CA or a timestamp authority
  std::vector<X509Ptr> chain;  // as listed: leaf-most first, root last
  std::time_t valid_from = 0;
  std::time_t valid_until = 0;
  std::string name;  // subject organization / common name, or uri
};

struct TrustedRoot {
  std::vector<TrustedLogKey> tlogs;
  std::vector<TrustedAuthority> certificate_authorities;
  std::vector<TrustedAuthority> timestamp_authorities;
  std::vector<TrustedLogKey> ctlogs;  // certificate transparency logs (SCT keys); may be empty
};

// Parses a ClientTrustConfig (its "trustedRoot" member) or a bare TrustedRoot, strictly (no
// duplicate keys). Errors: kInvalidArgument (not JSON, no tlogs or no certificate authorities,
// unreadable keys/certs/dates).
Result<TrustedRoot> ParseTrustedRoot(std::string_view json_text);

struct KeylessCheck {
  VerifyFailure failure = VerifyFailure::kNone;
  std::string message;   // what failed
  X509Ptr leaf;          // the verified Fulcio certificate (set when failure is kNone)
  std::string identity;  // the SAN that matched
  std::string issuer;
  std::vector<std::time_t> signing_times;
  std::vector<std::string> notes;  // what was verified, for the report
};

// Checks a keyless bundle's verification material against `root`, `identity` and `issuer`
// (both required, compared exactly). The DSSE signature itself is the caller's to check with
// the returned leaf's key.
KeylessCheck VerifyKeylessMaterial(const Bundle& bundle, const TrustedRoot& root,
                                   const std::string& identity, const std::string& issuer);

// RFC 9162 section 2.1.3.2: does `leaf_hash` at `index` of a tree of `tree_size` leaves fold
// through `path` into `root_hash`? SHA-256 Merkle tree hashing (0x00 leaf, 0x01 node prefixes).
bool VerifyInclusionProof(std::string_view leaf_hash, std::int64_t index, std::int64_t tree_size,
                          const std::vector<std::string>& path, std::string_view root_hash);

}  // namespace airlock::sign::internal
