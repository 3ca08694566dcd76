// RFC 6962 (section 2.1) Merkle tree hashing for the audit log: leaf hash = SHA-256(0x00 || data),
// interior node = SHA-256(0x01 || left || right), empty tree = SHA-256(""). CompactRange keeps the
// O(log n) right-edge subtree roots so the root of a growing log is computed incrementally.
// ConsistencyProof/VerifyConsistency are RFC 6962 section 2.1.2 proofs (verified as in RFC 9162
// section 2.1.4.2): that the tree of size `old_size` is a prefix of the tree of size `new_size`.
// Thread-safety: values; CompactRange is not shared between threads.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "core/hash.h"

namespace airlock::audit {

using core::Digest256;

Digest256 LeafHash(std::string_view data);
Digest256 NodeHash(const Digest256& left, const Digest256& right);
Digest256 EmptyTreeHash();

// MTH(D[n]) of RFC 6962 over already-hashed leaves (reference implementation, O(n)).
Digest256 MerkleRoot(std::span<const Digest256> leaf_hashes);

// PROOF(old_size, D[new_size]) over the first new_size of `leaf_hashes`; empty when old_size is 0
// or equals new_size. Requires old_size <= new_size <= leaf_hashes.size() (else empty).
std::vector<Digest256> ConsistencyProof(std::span<const Digest256> leaf_hashes,
                                        std::uint64_t old_size, std::uint64_t new_size);

// True when `proof` shows that the tree (old_size, old_root) is a prefix of (new_size, new_root).
// old_size 0 is consistent with anything (and needs an empty proof); equal sizes need equal roots
// and an empty proof. Never reads past `proof`; any malformed proof yields false.
bool VerifyConsistency(std::uint64_t old_size, std::uint64_t new_size, const Digest256& old_root,
                       const Digest256& new_root, std::span<const Digest256> proof);

class CompactRange {
 public:
  void Append(const Digest256& leaf_hash);
  // Root of the tree of all leaves appended so far (EmptyTreeHash() when none).
  Digest256 Root() const;
  std::uint64_t size() const { return size_; }

 private:
  std::uint64_t size_ = 0;
  // Roots of perfect subtrees, largest first; their sizes are the set bits of size_.
  std::vector<Digest256> peaks_;
};

}  // namespace airlock::audit
