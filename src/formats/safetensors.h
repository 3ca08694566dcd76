// safetensors: a strict reader of the header (u64 length + JSON) that enforces every check of the
// reference implementation (huggingface/safetensors tensor.rs) plus the differentials that
// matter to a scanner: a leading '{', duplicate keys, non-integer or negative numbers, and
// __metadata__ values other than strings are fatal; unknown tensor fields and non-space header
// padding are reported as issues. Tensor data is never read or copied: `data` must outlive the
// File. Thread-safety: a parsed File is immutable.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"

namespace airlock::formats::safetensors {

inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;  // reference MAX_HEADER_SIZE

// Bits per element of a dtype name ("F16" -> 16, "F4" -> 4); nullopt for unknown names.
std::optional<std::uint32_t> DtypeBits(std::string_view dtype);

struct TensorInfo {
  std::string name;
  std::string dtype;
  std::uint32_t dtype_bits = 0;
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // data_offsets, relative to File::data_offset()
  std::uint64_t end = 0;
  std::uint64_t n_elements = 0;
};

struct Issue {
  std::string code;  // stable; the scanner reports rule "safetensors.<code>"
  std::string message;
  std::uint64_t offset = 0;
};

struct ParseFailure {
  std::string code;
  std::string message;
  std::uint64_t offset = 0;
};

struct ParseOptions {
  std::uint64_t max_header_size = kMaxHeaderSize;
  int max_json_depth = 64;  // nesting inside the header JSON
  // JSON values held while validating (about 100 bytes each): bounds memory for a hostile
  // 100 MB header of tiny values. Real headers have ~6 values per tensor.
  std::uint64_t max_json_values = 1'000'000;
};

class File {
 public:
  // Parses the header of `data`. Errors: kCorrupt (any reference check or strict check fails),
  // kLimitExceeded (header larger than max_header_size, JSON nested too deeply or too many
  // values). `failure`, when
  // given, receives a stable code ("duplicate-key", "tensor-gap", ...) and the offset.
  static Result<File> Parse(std::span<const std::byte> data, const ParseOptions& options = {},
                            ParseFailure* failure = nullptr);

  std::uint64_t header_size() const { return header_size_; }
  std::uint64_t data_offset() const { return 8 + header_size_; }
  std::uint64_t file_size() const { return bytes_.size(); }
  std::string_view header_json() const;

  // In header order.
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  // __metadata__ entries, in header order.
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return metadata_; }
  const std::vector<Issue>& issues() const { return issues_; }

  std::optional<std::string_view> GetMetadata(std::string_view key) const;
  const TensorInfo* FindTensor(std::string_view name) const;
  // The tensor's bytes (bounds validated by Parse).
  std::span<const std::byte> TensorData(const TensorInfo& info) const;

 private:
  friend class HeaderParser;
  std::span<const std::byte> bytes_;
  std::uint64_t header_size_ = 0;
  std::vector<TensorInfo> tensors_;
  std::vector<std::pair<std::string, std::string>> metadata_;
  std::vector<Issue> issues_;
};

}  // namespace airlock::formats::safetensors
