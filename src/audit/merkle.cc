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
