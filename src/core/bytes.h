// ByteReader: bounds-checked little-endian reads over an untrusted byte span. Every read checks
// the remaining length first and reports failure instead of reading past the end, so format
// parsers never index raw pointers themselves. Offsets are absolute within the span, for error
// messages and findings. Not thread-safe (it has a cursor); cheap to copy.
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string_view>

namespace airlock::core {

class ByteReader {
 public:
  explicit ByteReader(std::span<const std::byte> data, std::size_t offset = 0)
      : data_(data), pos_(offset <= data.size() ? offset : data.size()) {}

  std::size_t offset() const { return pos_; }
  std::size_t size() const { return data_.size(); }
  std::size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ >= data_.size(); }
  std::span<const std::byte> data() const { return data_; }

  // Moves the cursor; false (cursor unchanged) when `offset` is past the end.
  bool Seek(std::size_t offset) {
    if (offset > data_.size()) return false;
    pos_ = offset;
    return true;
  }
  bool Skip(std::uint64_t n) {
    if (n > remaining()) return false;
    pos_ += static_cast<std::size_t>(n);
    return true;
  }

  template <typename T>
  std::optional<T> ReadLE() {
    static_assert(std::is_trivially_copyable_v<T>);
    if (remaining() < sizeof(T)) return std::nullopt;
    T v;
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    if constexpr (std::endian::native == std::endian::big && sizeof(T) > 1) {
      auto* b = reinterpret_cast<unsigned char*>(&v);
      for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
    }
    pos_ += sizeof(T);
    return v;
  }

  std::optional<std::uint8_t> U8() { return ReadLE<std::uint8_t>(); }
  std::optional<std::uint16_t> U16() { return ReadLE<std::uint16_t>(); }
  std::optional<std::uint32_t> U32() { return ReadLE<std::uint32_t>(); }
  std::optional<std::uint64_t> U64() { return ReadLE<std::uint64_t>(); }

  // A view of the next `n` bytes (valid as long as the underlying span); nullopt if short.
  std::optional<std::span<const std::byte>> Bytes(std::uint64_t n) {
    if (n > remaining()) return std::nullopt;
    auto s = data_.subspan(pos_, static_cast<std::size_t>(n));
    pos_ += static_cast<std::size_t>(n);
    return s;
  }
  std::optional<std::string_view> String(std::uint64_t n) {
    auto b = Bytes(n);
    if (!b) return std::nullopt;
    return std::string_view(reinterpret_cast<const char*>(b->data()), b->size());
  }
  // Bytes up to (not including) `delim`; the delimiter is consumed. nullopt if absent.
  std::optional<std::string_view> Until(char delim) {
    const char* begin = reinterpret_cast<const char*>(data_.data()) + pos_;
    const void* hit = std::memchr(begin, delim, remaining());
    if (hit == nullptr) return std::nullopt;
    std::size_t len = static_cast<const char*>(hit) - begin;
    pos_ += len + 1;
    return std::string_view(begin, len);
  }

 private:
  std::span<const std::byte> data_;
  std::size_t pos_;
};

// Overflow-checked arithmetic for sizes declared by untrusted headers.
inline bool CheckedAdd(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
inline bool CheckedMul(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

}  // namespace airlock::core
