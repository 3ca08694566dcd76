#include "formats/protobuf.h"

#include <string>

namespace airlock::formats::protobuf {

std::optional<std::uint64_t> FieldReader::Varint() {
  std::uint64_t value = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (pos_ >= data_.size()) return std::nullopt;
    auto b = static_cast<std::uint8_t>(data_[pos_++]);
    value |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return value;
  }
  return std::nullopt;  // more than 10 bytes
}

std::optional<Field> FieldReader::Next() {
  if (!error_.ok() || pos_ >= data_.size()) return std::nullopt;
  Field f;
  f.offset = pos_;
  auto fail = [&](const char* what) -> std::optional<Field> {
    error_ = Corrupt(std::string("protobuf: ") + what + " at offset " + std::to_string(f.offset));
    return std::nullopt;
  };
  auto tag = Varint();
  if (!tag) return fail("truncated tag");
  f.number = static_cast<std::uint32_t>(*tag >> 3);
  auto wire = static_cast<std::uint8_t>(*tag & 7);
  if (f.number == 0 || *tag >> 3 > 0x1fffffff) return fail("invalid field number");
  switch (wire) {
    case 0: {
      auto v = Varint();
      if (!v) return fail("truncated varint");
      f.type = WireType::kVarint;
      f.varint = *v;
      return f;
    }
    case 1:
    case 5: {
      std::size_t n = wire == 1 ? 8 : 4;
      if (data_.size() - pos_ < n) return fail("truncated fixed-width value");
      std::uint64_t v = 0;
      for (std::size_t i = 0; i < n; ++i)
        v |= static_cast<std::uint64_t>(static_cast<std::uint8_t>(data_[pos_ + i])) << (8 * i);
      pos_ += n;
      f.type = wire == 1 ? WireType::kFixed64 : WireType::kFixed32;
      f.varint = v;
      return f;
    }
    case 2: {
      auto len = Varint();
      if (!len) return fail("truncated length");
      if (*len > data_.size() - pos_) return fail("length runs past the end of the message");
      f.type = WireType::kLen;
      f.bytes = data_.subspan(pos_, static_cast<std::size_t>(*len));
      pos_ += static_cast<std::size_t>(*len);
      return f;
    }
    default:
      return fail("unsupported wire type (groups or invalid)");
  }
}

}  // namespace airlock::formats::protobuf
