// GGUF (llama.cpp/ggml model files, versions 2 and 3): a hardened, zero-copy reader.
// File::Parse validates the whole header (every check llama.cpp's gguf reader and model loader
// make, in overflow-checked arithmetic) and indexes metadata and tensor infos as views into the
// caller's buffer: tensor data and large arrays are never copied, so the buffer (usually a
// core::MappedFile) must outlive the File and every view obtained from it. Fatal problems are an
// error; suspicious-but-loadable ones (trailing data, non-zero padding, bad UTF-8...) are listed
// in File::issues() for the scanner. Thread-safety: a parsed File is immutable and may be read
// from many threads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "core/status.h"
#include "formats/ggml_types.h"

namespace airlock::formats::gguf {

inline constexpr std::uint32_t kDefaultAlignment = 32;
inline constexpr std::uint32_t kMaxDims = 4;
inline constexpr std::size_t kMaxTensorNameLength = 63;  // ggml: name must fit in char[64]
inline constexpr std::uint64_t kMaxLayers = 512;         // llama.cpp LLAMA_MAX_LAYERS

// Metadata value types (gguf_type).
enum class ValueType : std::uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
inline constexpr std::uint32_t kValueTypeCount = 13;

// "uint8", "string", "array"...; "invalid" for out-of-range values.
std::string_view ValueTypeName(ValueType t);
// Encoded size of a fixed-size value type; 0 for string and array.
std::size_t ValueTypeSize(ValueType t);

// GgmlType and kGgmlTypeCount (the ggml tensor type ids) are in formats/ggml_types.h.

struct TypeTraits {
  std::string_view name;     // "Q4_K", "F16"...
  std::uint32_t block_size;  // elements per block
  std::uint32_t type_size;   // bytes per block
  bool quantized;            // block-quantized (needs general.quantization_version)
};

// Traits of a ggml type id; nullptr for ids that are unknown or were removed from GGUF files
// (Q4_2, Q4_3, Q4_0_4_4...). Such a tensor makes Parse fail with kUnsupported.
const TypeTraits* GetTypeTraits(std::uint32_t type);
inline const TypeTraits* GetTypeTraits(GgmlType type) {
  return GetTypeTraits(static_cast<std::uint32_t>(type));
}
// The type's name, or "type-<id>" for unknown ids.
std::string GgmlTypeName(std::uint32_t type);

namespace internal {
struct ArrayData;
}

// A metadata array: elements are views into the parsed buffer. Element accessors are
// bounds-checked and type-checked: they return nullopt for an index >= size() or an element type
// that does not match.
class ArrayView {
 public:
  ArrayView() = default;
  explicit ArrayView(const internal::ArrayData* data) : data_(data) {}

  ValueType element_type() const;
  std::uint64_t size() const;
  bool empty() const { return size() == 0; }
  std::uint64_t offset() const;  // file offset of the first element

  std::optional<std::string_view> StringAt(std::uint64_t i) const;
  std::optional<ArrayView> ArrayAt(std::uint64_t i) const;
  // The element as exactly T (uint8_t, int8_t, ..., float, double, bool) when the element type
  // is T's GGUF type.
  template <typename T>
  std::optional<T> At(std::uint64_t i) const;
  // Any integer element type, converted when the value fits; nullopt otherwise.
  std::optional<std::uint64_t> UintAt(std::uint64_t i) const;
  std::optional<std::int64_t> IntAt(std::uint64_t i) const;
  // float32/float64 elements.
  std::optional<double> FloatAt(std::uint64_t i) const;

  // The encoded elements for fixed-size element types (little-endian, unaligned); empty for
  // string and array elements.
  std::span<const std::byte> raw() const;

 private:
  std::optional<std::span<const std::byte>> FixedAt(std::uint64_t i, ValueType want) const;
  const internal::ArrayData* data_ = nullptr;
};

// One metadata value.
class Value {
 public:
  ValueType type() const { return type_; }
  std::uint64_t offset() const { return offset_; }  // file offset of the encoded value

  // Integer types (signed ones only when non-negative).
  std::optional<std::uint64_t> AsUint() const;
  // Integer types (unsigned ones only when they fit in int64).
  std::optional<std::int64_t> AsInt() const;
  // float32/float64.
  std::optional<double> AsFloat() const;
  std::optional<bool> AsBool() const;
  std::optional<std::string_view> AsString() const;
  std::optional<ArrayView> AsArray() const;

 private:
  friend class Parser;
  ValueType type_ = ValueType::kUint8;
  std::uint64_t offset_ = 0;
  std::uint64_t u_ = 0;  // unsigned ints, bool, bit pattern of signed ints
  double f_ = 0;         // floats
  std::string_view s_;   // strings
  std::shared_ptr<const internal::ArrayData> array_;
};

struct KeyValue {
  std::string_view key;
  std::uint64_t offset = 0;  // file offset of the key's length field
  Value value;
};

struct TensorInfo {
  std::string_view name;
  std::uint32_t n_dims = 0;
  std::array<std::uint64_t, kMaxDims> ne{1, 1, 1, 1};  // fastest-varying first; unused dims 1
  std::uint32_t type = 0;                              // ggml type id (see GgmlType)
  std::uint64_t offset = 0;  // relative to the data section (File::data_offset())
  std::uint64_t n_elements = 0;
  std::uint64_t n_bytes = 0;      // nelements / block_size * type_size
  std::uint64_t info_offset = 0;  // file offset of this tensor-info record

  GgmlType ggml_type() const { return static_cast<GgmlType>(type); }
};

// A non-fatal anomaly. `code` is stable (e.g. "trailing-data"); the scanner turns it into rule
// "gguf.<code>".
struct Issue {
  std::string code;
  std::string message;
  std::uint64_t offset = 0;
};

// Details of a fatal parse error, for the scanner (rule "gguf.<code>").
struct ParseFailure {
  std::string code;
  std::string message;
  std::uint64_t offset = 0;
};

struct ParseOptions {
  std::uint64_t max_string_length = 1ull << 30;   // GGUF_MAX_STRING_LENGTH
  std::uint64_t max_array_elements = 1ull << 30;  // GGUF_MAX_ARRAY_ELEMENTS
  int max_array_depth = 4;  // nested arrays (the spec allows them; llama.cpp refuses them)
  // Upper bound on per-element index entries (strings and nested arrays) across the file, so the
  // index of views stays proportional to the input.
  std::uint64_t max_index_entries = 64ull << 20;
  // Check that the padding bytes after each tensor are zero (reads at most alignment-1 bytes at
  // the end of each tensor; never the tensor data itself).
  bool check_tensor_padding = true;
};

class File {
 public:
  // Parses `data` (which must outlive the File). Errors: kCorrupt (malformed), kUnsupported
  // (version 1 or a future version, big-endian file, unknown tensor type), kLimitExceeded (an
  // option's cap). When `failure` is given it receives a stable code and the offset of the error.
  static Result<File> Parse(std::span<const std::byte> data, const ParseOptions& options = {},
                            ParseFailure* failure = nullptr);

  std::uint32_t version() const { return version_; }
  std::uint32_t alignment() const { return alignment_; }
  std::uint64_t data_offset() const { return data_offset_; }  // start of the tensor data section
  std::uint64_t data_size() const { return data_size_; }      // padded bytes of tensor data
  std::uint64_t file_size() const { return bytes_.size(); }
  std::span<const std::byte> bytes() const { return bytes_; }

  const std::vector<KeyValue>& metadata() const { return kvs_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const std::vector<Issue>& issues() const { return issues_; }

  const KeyValue* Find(std::string_view key) const;
  // Typed accessors: nullopt when the key is absent or of an incompatible type (see Value).
  std::optional<std::string_view> GetString(std::string_view key) const;
  std::optional<std::uint64_t> GetUint(std::string_view key) const;
  std::optional<std::int64_t> GetInt(std::string_view key) const;
  std::optional<double> GetFloat(std::string_view key) const;
  std::optional<bool> GetBool(std::string_view key) const;
  std::optional<ArrayView> GetArray(std::string_view key) const;
  // general.architecture, or "" when absent.
  std::string_view architecture() const;

  const TensorInfo* FindTensor(std::string_view name) const;
  // The tensor's bytes within the buffer (bounds were validated by Parse).
  std::span<const std::byte> TensorData(const TensorInfo& info) const;

 private:
  friend class Parser;
  std::span<const std::byte> bytes_;
  std::uint32_t version_ = 0;
  std::uint32_t alignment_ = kDefaultAlignment;
  std::uint64_t data_offset_ = 0;
  std::uint64_t data_size_ = 0;
  std::vector<KeyValue> kvs_;
  std::vector<TensorInfo> tensors_;
  std::vector<Issue> issues_;
  std::unordered_map<std::string_view, std::size_t> kv_index_;
  std::unordered_map<std::string_view, std::size_t> tensor_index_;
};

// Model-level consistency checks beyond the container (gguf_checks.cc), for the scanner and the
// engine's loader: tokenizer arrays present, of the types llama.cpp requires (tokens: string,
// scores: float32, token_type: int32) and of equal length; every tokenizer.ggml.*_token_id an
// integer below the vocabulary size; BYTE tokens spelled <0xHH>; {arch}.block_count <= 512;
// context length and head counts sane; general.quantization_version present when tensors are
// quantized; token_embd shape consistent with the vocabulary and embedding length. Codes:
// "vocab-*", "special-token-out-of-range", "bad-byte-token", "hparam-*", "missing-*".
std::vector<Issue> CheckModelMetadata(const File& file);

namespace internal {
struct ArrayData {
  ValueType element_type = ValueType::kUint8;
  std::uint64_t count = 0;
  std::uint64_t offset = 0;
  std::span<const std::byte> raw;         // fixed-size elements
  std::vector<std::string_view> strings;  // string elements
  std::vector<ArrayData> arrays;          // nested array elements
};

template <typename T>
constexpr std::optional<ValueType> ValueTypeOf() {
  if constexpr (std::is_same_v<T, std::uint8_t>) return ValueType::kUint8;
  if constexpr (std::is_same_v<T, std::int8_t>) return ValueType::kInt8;
  if constexpr (std::is_same_v<T, std::uint16_t>) return ValueType::kUint16;
  if constexpr (std::is_same_v<T, std::int16_t>) return ValueType::kInt16;
  if constexpr (std::is_same_v<T, std::uint32_t>) return ValueType::kUint32;
  if constexpr (std::is_same_v<T, std::int32_t>) return ValueType::kInt32;
  if constexpr (std::is_same_v<T, float>) return ValueType::kFloat32;
  if constexpr (std::is_same_v<T, bool>) return ValueType::kBool;
  if constexpr (std::is_same_v<T, std::uint64_t>) return ValueType::kUint64;
  if constexpr (std::is_same_v<T, std::int64_t>) return ValueType::kInt64;
  if constexpr (std::is_same_v<T, double>) return ValueType::kFloat64;
  return std::nullopt;
}
}  // namespace internal

template <typename T>
std::optional<T> ArrayView::At(std::uint64_t i) const {
  constexpr auto want = internal::ValueTypeOf<T>();
  static_assert(want.has_value(), "At<T>: T must be a GGUF scalar type");
  auto bytes = FixedAt(i, *want);
  if (!bytes) return std::nullopt;
  if constexpr (std::is_same_v<T, bool>) {
    return (*bytes)[0] != std::byte{0};
  } else {
    T v;
    std::memcpy(&v, bytes->data(), sizeof(T));  // GGUF v3 files we accept are little-endian
    return v;
  }
}

}  // namespace airlock::formats::gguf
