// A minimal, hardened reader of the protocol-buffers wire format: iterate the fields of one
// message held in a byte span, without a schema. Used to walk TensorFlow GraphDef/SavedModel
// files for the ops they contain. Never allocates; every length is checked against the bytes.
// Thread-safety: FieldReader is a cursor (not shared); the span must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "core/status.h"

namespace airlock::formats::protobuf {

enum class WireType : std::uint8_t {
  kVarint = 0,
  kFixed64 = 1,
  kLen = 2,
  kStartGroup = 3,
  kEndGroup = 4,
  kFixed32 = 5
};

struct Field {
  std::uint32_t number = 0;
  WireType type = WireType::kVarint;
  std::uint64_t varint = 0;          // kVarint, kFixed64, kFixed32 values
  std::span<const std::byte> bytes;  // kLen payload (sub-message, string or packed data)
  std::uint64_t offset = 0;          // of the tag, relative to the reader's span
  std::string_view AsString() const {
    return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
  }
};

class FieldReader {
 public:
  explicit FieldReader(std::span<const std::byte> message) : data_(message) {}

  // The next field; nullopt at the end of the message. On malformed input returns nullopt and
  // sets error() (kCorrupt with the offset). Groups (deprecated) are reported as unsupported.
  std::optional<Field> Next();
  const Status& error() const { return error_; }

 private:
  std::optional<std::uint64_t> Varint();

  std::span<const std::byte> data_;
  std::size_t pos_ = 0;
  Status error_;
};

}  // namespace airlock::formats::protobuf
