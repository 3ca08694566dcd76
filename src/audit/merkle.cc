#include "audit/merkle.h"

#include <cstddef>

namespace airlock::audit {

Digest256 LeafHash(std::string_view data) {
  core::Sha256 h;
  const char prefix = 0x00;
  h.Update(std::string_view(&prefix, 1));
  h.Update(data);
  return h.Finish();
}

Digest256 NodeHash(const Digest256& left, const Digest256& right) {
  core::Sha256 h;
  const char prefix = 0x01;
  h.Update(std::string_view(&prefix, 1));
  h.Update(std::string_view(reinterpret_cast<const char*>(left.data()), left.size()));
  h.Update(std::string_view(reinterpret_cast<const char*>(right.data()), right.size()));
  return h.Finish();
}

Digest256 EmptyTreeHash() { return core::Sha256Of(std::string_view()); }

Digest256 MerkleRoot(std::span<const Digest256> leaves) {
  if (leaves.empty()) return EmptyTreeHash();
  if (leaves.size() == 1) return leaves[0];
  std::size_t k = 1;  // largest power of two strictly smaller than n
  while (k * 2 < leaves.size()) k *= 2;
  return NodeHash(MerkleRoot(leaves.subspan(0, k)), MerkleRoot(leaves.subspan(k)));
}

namespace {

// SUBPROOF(m, D[n], b) of RFC 6962 section 2.1.2, appended to `out`.
void SubProof(std::span<const Digest256> leaves, std::uint64_t m, bool complete_subtree,
              std::vector<Digest256>& out) {
  const std::uint64_t n = leaves.size();
  if (m == n) {
    if (!complete_subtree) out.push_back(MerkleRoot(leaves));
    return;
  }
  std::uint64_t k = 1;  // largest power of two strictly smaller than n (n >= 2 here)
  while (k * 2 < n) k *= 2;
  if (m <= k) {
    SubProof(leaves.subspan(0, k), m, complete_subtree, out);
    out.push_back(MerkleRoot(leaves.subspan(k)));
  } else {
    SubProof(leaves.subspan(k), m - k, false, out);
    out.push_back(MerkleRoot(leaves.subspan(0, k)));
  }
}

}  // namespace

std::vector<Digest256> ConsistencyProof(std::span<const Digest256> leaf_hashes,
                                        std::uint64_t old_size, std::uint64_t new_size) {
  std::vector<Digest256> proof;
  if (old_size == 0 || old_size >= new_size || new_size > leaf_hashes.size()) return proof;
  SubProof(leaf_hashes.subspan(0, new_size), old_size, true, proof);
  return proof;
}

bool VerifyConsistency(std::uint64_t old_size, std::uint64_t new_size, const Digest256& old_root,
                       const Digest256& new_root, std::span<const Digest256> proof) {
  if (old_size > new_size) return false;
  if (old_size == new_size) return proof.empty() && old_root == new_root;
  if (old_size == 0) return proof.empty();
  // A proof never has more than about 2 * log2(new_size) hashes.
  if (proof.empty() || proof.size() > 128) return false;
  std::vector<Digest256> path;
  // When the old tree is a complete subtree its root is the first node of the path.
  if ((old_size & (old_size - 1)) == 0) path.push_back(old_root);
  path.insert(path.end(), proof.begin(), proof.end());
  std::uint64_t fn = old_size - 1, sn = new_size - 1;
  while (fn & 1) {
    fn >>= 1;
    sn >>= 1;
  }
  Digest256 fr = path[0], sr = path[0];
  for (std::size_t i = 1; i < path.size(); ++i) {
    const Digest256& c = path[i];
    if (sn == 0) return false;
    if ((fn & 1) || fn == sn) {
      fr = NodeHash(c, fr);
      sr = NodeHash(c, sr);
      if (!(fn & 1)) {
        do {
          fn >>= 1;
          sn >>= 1;
        } while (!(fn & 1) && fn != 0);
      }
    } else {
      sr = NodeHash(sr, c);
    }
    fn >>= 1;
    sn >>= 1;
  }
  return fr == old_root && sr == new_root && sn == 0;
}

void CompactRange::Append(const Digest256& leaf_hash) {
  // Merge equal-sized perfect subtrees, like incrementing a binary counter.
  Digest256 node = leaf_hash;
  std::uint64_t s = size_;
  while (s & 1) {
    node = NodeHash(peaks_.back(), node);
    peaks_.pop_back();
    s >>= 1;
  }
  peaks_.push_back(node);
  ++size_;
}

Digest256 CompactRange::Root() const {
  if (peaks_.empty()) return EmptyTreeHash();
  // Fold from the smallest (rightmost) subtree leftwards; matches MTH's left-heavy split.
  Digest256 root = peaks_.back();
  for (std::size_t i = peaks_.size() - 1; i-- > 0;) root = NodeHash(peaks_[i], root);
  return root;
}

}  // namespace airlock::audit
