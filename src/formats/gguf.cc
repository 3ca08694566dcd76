// The GGUF reader: header, metadata key/values, tensor infos and data offset, each checked against
// the bytes that exist. Kept as one file (about 900 lines) on purpose: the value decoder, the
// array views and the Parser share one set of bounds rules (alignment, lengths, type sizes) that
// a reviewer should see together; the model-level checks are in gguf_checks.cc.
#include "formats/gguf.h"

#include <algorithm>
#include <cstdio>
#include <limits>

#include "core/bytes.h"
#include "core/file.h"

namespace airlock::formats::gguf {

namespace {

using u128 = unsigned __int128;

constexpr std::uint64_t kInt64Max =
    static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());

// Indexed by ggml type id; block_size 0 marks ids that are unknown or removed from the format.
constexpr TypeTraits kTypeTraits[kGgmlTypeCount] = {
    {"F32", 1, 4, false},        // 0
    {"F16", 1, 2, false},        // 1
    {"Q4_0", 32, 18, true},      // 2
    {"Q4_1", 32, 20, true},      // 3
    {"Q4_2", 0, 0, true},        // 4 removed
    {"Q4_3", 0, 0, true},        // 5 removed
    {"Q5_0", 32, 22, true},      // 6
    {"Q5_1", 32, 24, true},      // 7
    {"Q8_0", 32, 34, true},      // 8
    {"Q8_1", 32, 36, true},      // 9
    {"Q2_K", 256, 84, true},     // 10
    {"Q3_K", 256, 110, true},    // 11
    {"Q4_K", 256, 144, true},    // 12
    {"Q5_K", 256, 176, true},    // 13
    {"Q6_K", 256, 210, true},    // 14
    {"Q8_K", 256, 292, true},    // 15
    {"IQ2_XXS", 256, 66, true},  // 16
    {"IQ2_XS", 256, 74, true},   // 17
    {"IQ3_XXS", 256, 98, true},  // 18
    {"IQ1_S", 256, 50, true},    // 19
    {"IQ4_NL", 32, 18, true},    // 20
    {"IQ3_S", 256, 110, true},   // 21
    {"IQ2_S", 256, 82, true},    // 22
    {"IQ4_XS", 256, 136, true},  // 23
    {"I8", 1, 1, false},         // 24
    {"I16", 1, 2, false},        // 25
    {"I32", 1, 4, false},        // 26
    {"I64", 1, 8, false},        // 27
    {"F64", 1, 8, false},        // 28
    {"IQ1_M", 256, 56, true},    // 29
    {"BF16", 1, 2, false},       // 30
    {"Q4_0_4_4", 0, 0, true},    // 31 removed
    {"Q4_0_4_8", 0, 0, true},    // 32 removed
    {"Q4_0_8_8", 0, 0, true},    // 33 removed
    {"TQ1_0", 256, 54, true},    // 34
    {"TQ2_0", 256, 66, true},    // 35
    {"IQ4_NL_4_4", 0, 0, true},  // 36 removed
    {"IQ4_NL_4_8", 0, 0, true},  // 37 removed
    {"IQ4_NL_8_8", 0, 0, true},  // 38 removed
    {"MXFP4", 32, 17, true},     // 39
    {"NVFP4", 64, 36, true},     // 40
    {"Q1_0", 128, 18, true},     // 41
    {"Q2_0", 64, 18, true},      // 42
};

bool ValidUtf8(std::string_view s) {
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += len;
  }
  return true;
}

// The spec's key grammar: lower_snake_case segments joined by '.'.
bool ValidKeyGrammar(std::string_view key) {
  if (key.empty() || key.size() > 65535) return false;
  bool segment_empty = true;
  for (char c : key) {
    if (c == '.') {
      if (segment_empty) return false;
      segment_empty = true;
      continue;
    }
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return false;
    segment_empty = false;
  }
  return !segment_empty;
}

bool PrintableAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

bool PadChecked(std::uint64_t v, std::uint64_t align, std::uint64_t* out) {
  // align is a power of two; v + align - 1 must not overflow (the GGML_PAD bypass, PR #24759).
  std::uint64_t t;
  if (!core::CheckedAdd(v, align - 1, &t)) return false;
  *out = t & ~(align - 1);
  return true;
}

bool AllZero(std::span<const std::byte> b) {
  return std::all_of(b.begin(), b.end(), [](std::byte x) { return x == std::byte{0}; });
}

std::string Hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

std::string_view ValueTypeName(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
      return "uint8";
    case ValueType::kInt8:
      return "int8";
    case ValueType::kUint16:
      return "uint16";
    case ValueType::kInt16:
      return "int16";
    case ValueType::kUint32:
      return "uint32";
    case ValueType::kInt32:
      return "int32";
    case ValueType::kFloat32:
      return "float32";
    case ValueType::kBool:
      return "bool";
    case ValueType::kString:
      return "string";
    case ValueType::kArray:
      return "array";
    case ValueType::kUint64:
      return "uint64";
    case ValueType::kInt64:
      return "int64";
    case ValueType::kFloat64:
      return "float64";
  }
  return "invalid";
}

std::size_t ValueTypeSize(ValueType t) {
  switch (t) {
    case ValueType::kUint8:
    case ValueType::kInt8:
    case ValueType::kBool:
      return 1;
    case ValueType::kUint16:
    case ValueType::kInt16:
      return 2;
    case ValueType::kUint32:
    case ValueType::kInt32:
    case ValueType::kFloat32:
      return 4;
    case ValueType::kUint64:
    case ValueType::kInt64:
    case ValueType::kFloat64:
      return 8;
    case ValueType::kString:
    case ValueType::kArray:
      return 0;
  }
  return 0;
}

const TypeTraits* GetTypeTraits(std::uint32_t type) {
  if (type >= kGgmlTypeCount || kTypeTraits[type].block_size == 0) return nullptr;
  return &kTypeTraits[type];
}

std::string GgmlTypeName(std::uint32_t type) {
  if (type < kGgmlTypeCount) return std::string(kTypeTraits[type].name);
  return "type-" + std::to_string(type);
}

// ---------------------------------------------------------------------------------------------
// Scalar decoding shared by Value and ArrayView.

namespace {

struct Scalar {
  std::uint64_t u = 0;  // unsigned value, bool, or the sign-extended bits of a signed value
  double f = 0;
};

Scalar DecodeScalar(ValueType t, const std::byte* p) {
  Scalar s;
  auto load = [p](auto v) {
    std::memcpy(&v, p, sizeof(v));
    return v;
  };
  switch (t) {
    case ValueType::kUint8:
      s.u = load(std::uint8_t{});
      break;
    case ValueType::kInt8:
      s.u = static_cast<std::uint64_t>(static_cast<std::int64_t>(load(std::int8_t{})));
      break;
    case ValueType::kUint16:
      s.u = load(std::uint16_t{});
      break;
    case ValueType::kInt16:
      s.u = static_cast<std::uint64_t>(static_cast<std::int64_t>(load(std::int16_t{})));
      break;
    case ValueType::kUint32:
      s.u = load(std::uint32_t{});
      break;
    case ValueType::kInt32:
      s.u = static_cast<std::uint64_t>(static_cast<std::int64_t>(load(std::int32_t{})));
      break;
    case ValueType::kUint64:
      s.u = load(std::uint64_t{});
      break;
    case ValueType::kInt64:
      s.u = static_cast<std::uint64_t>(load(std::int64_t{}));
      break;
    case ValueType::kBool:
      s.u = load(std::uint8_t{});
      break;
    case ValueType::kFloat32:
      s.f = load(float{});
      break;
    case ValueType::kFloat64:
      s.f = load(double{});
      break;
    default:
      break;
  }
  return s;
}

bool IsSigned(ValueType t) {
  return t == ValueType::kInt8 || t == ValueType::kInt16 || t == ValueType::kInt32 ||
         t == ValueType::kInt64;
}
bool IsUnsigned(ValueType t) {
  return t == ValueType::kUint8 || t == ValueType::kUint16 || t == ValueType::kUint32 ||
         t == ValueType::kUint64;
}

std::optional<std::uint64_t> ToUint(ValueType t, std::uint64_t u) {
  if (IsUnsigned(t)) return u;
  if (IsSigned(t) && static_cast<std::int64_t>(u) >= 0) return u;
  return std::nullopt;
}
std::optional<std::int64_t> ToInt(ValueType t, std::uint64_t u) {
  if (IsSigned(t)) return static_cast<std::int64_t>(u);
  if (IsUnsigned(t) && u <= kInt64Max) return static_cast<std::int64_t>(u);
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// ArrayView

ValueType ArrayView::element_type() const {
  return data_ ? data_->element_type : ValueType::kUint8;
}
std::uint64_t ArrayView::size() const { return data_ ? data_->count : 0; }
std::uint64_t ArrayView::offset() const { return data_ ? data_->offset : 0; }
std::span<const std::byte> ArrayView::raw() const {
  return data_ ? data_->raw : std::span<const std::byte>();
}

std::optional<std::string_view> ArrayView::StringAt(std::uint64_t i) const {
  if (!data_ || data_->element_type != ValueType::kString || i >= data_->strings.size())
    return std::nullopt;
  return data_->strings[static_cast<std::size_t>(i)];
}

std::optional<ArrayView> ArrayView::ArrayAt(std::uint64_t i) const {
  if (!data_ || data_->element_type != ValueType::kArray || i >= data_->arrays.size())
    return std::nullopt;
  return ArrayView(&data_->arrays[static_cast<std::size_t>(i)]);
}

std::optional<std::span<const std::byte>> ArrayView::FixedAt(std::uint64_t i,
                                                             ValueType want) const {
  if (!data_ || data_->element_type != want || i >= data_->count) return std::nullopt;
  std::size_t sz = ValueTypeSize(want);
  if (sz == 0) return std::nullopt;
  return data_->raw.subspan(static_cast<std::size_t>(i) * sz, sz);
}

std::optional<std::uint64_t> ArrayView::UintAt(std::uint64_t i) const {
  if (!data_ || i >= data_->count) return std::nullopt;
  ValueType t = data_->element_type;
  if (!IsSigned(t) && !IsUnsigned(t)) return std::nullopt;
  auto b = FixedAt(i, t);
  if (!b) return std::nullopt;
  return ToUint(t, DecodeScalar(t, b->data()).u);
}

std::optional<std::int64_t> ArrayView::IntAt(std::uint64_t i) const {
  if (!data_ || i >= data_->count) return std::nullopt;
  ValueType t = data_->element_type;
  if (!IsSigned(t) && !IsUnsigned(t)) return std::nullopt;
  auto b = FixedAt(i, t);
  if (!b) return std::nullopt;
  return ToInt(t, DecodeScalar(t, b->data()).u);
}

std::optional<double> ArrayView::FloatAt(std::uint64_t i) const {
  if (!data_ || i >= data_->count) return std::nullopt;
  ValueType t = data_->element_type;
  if (t != ValueType::kFloat32 && t != ValueType::kFloat64) return std::nullopt;
  auto b = FixedAt(i, t);
  if (!b) return std::nullopt;
  return DecodeScalar(t, b->data()).f;
}

// ---------------------------------------------------------------------------------------------
// Value

std::optional<std::uint64_t> Value::AsUint() const { return ToUint(type_, u_); }
std::optional<std::int64_t> Value::AsInt() const { return ToInt(type_, u_); }
std::optional<double> Value::AsFloat() const {
  if (type_ == ValueType::kFloat32 || type_ == ValueType::kFloat64) return f_;
  return std::nullopt;
}
std::optional<bool> Value::AsBool() const {
  if (type_ == ValueType::kBool) return u_ != 0;
  return std::nullopt;
}
std::optional<std::string_view> Value::AsString() const {
  if (type_ == ValueType::kString) return s_;
  return std::nullopt;
}
std::optional<ArrayView> Value::AsArray() const {
  if (type_ == ValueType::kArray && array_) return ArrayView(array_.get());
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Parser

class Parser {
 public:
  Parser(std::span<const std::byte> data, const ParseOptions& options, ParseFailure* failure)
      : r_(data), options_(options), failure_(failure) {
    file_.bytes_ = data;
  }

  Result<File> Run();

 private:
  Status Fail(StatusCode sc, std::string code, std::string detail, std::uint64_t offset) {
    std::string msg = "gguf: " + detail + " at offset " + std::to_string(offset);
    if (failure_) {
      failure_->code = code;
      failure_->message = detail;
      failure_->offset = offset;
    }
    return Status(sc, msg);
  }
  Status Truncated(std::string_view what, std::uint64_t offset) {
    return Fail(StatusCode::kCorrupt, "truncated", "file ends inside " + std::string(what), offset);
  }
  void Note(std::string code, std::string message, std::uint64_t offset) {
    // Keep the list bounded: one entry per code beyond the first few of each.
    std::size_t same = 0;
    for (const Issue& i : file_.issues_) same += i.code == code;
    if (same >= 8) return;
    file_.issues_.push_back({std::move(code), std::move(message), offset});
  }

  Status ReadString(std::string_view what, std::string_view* out);
  Status ReadValue(ValueType type, int depth, Value* out);
  Status ReadArray(int depth, internal::ArrayData* out);
  Status ReadHeader(std::uint64_t* n_tensors, std::uint64_t* n_kv);
  Status ReadKv();
  Status ReadTensorInfo();
  Status ChargeIndex(std::uint64_t n, std::uint64_t offset) {
    if (!core::CheckedAdd(index_entries_, n, &index_entries_) ||
        index_entries_ > options_.max_index_entries) {
      return Fail(StatusCode::kLimitExceeded, "limit-index",
                  "more than " + std::to_string(options_.max_index_entries) +
                      " indexed strings/arrays in metadata",
                  offset);
    }
    return Status::Ok();
  }

  core::ByteReader r_;
  const ParseOptions& options_;
  ParseFailure* failure_;
  File file_;
  std::uint64_t index_entries_ = 0;
  bool bad_utf8_noted_ = false;
};

Status Parser::ReadString(std::string_view what, std::string_view* out) {
  std::uint64_t at = r_.offset();
  auto len = r_.U64();
  if (!len) return Truncated(std::string(what) + " length", at);
  if (*len > options_.max_string_length) {
    return Fail(StatusCode::kCorrupt, "string-too-long",
                std::string(what) + " length " + std::to_string(*len) + " exceeds the limit of " +
                    std::to_string(options_.max_string_length),
                at);
  }
  if (*len > r_.remaining()) {
    return Fail(StatusCode::kCorrupt, "string-out-of-bounds",
                std::string(what) + " length " + std::to_string(*len) +
                    " runs past the end of file (" + std::to_string(r_.remaining()) +
                    " bytes left)",
                at);
  }
  *out = *r_.String(*len);
  return Status::Ok();
}

Status Parser::ReadArray(int depth, internal::ArrayData* out) {
  std::uint64_t at = r_.offset();
  auto et = r_.U32();
  if (!et) return Truncated("array element type", at);
  if (*et >= kValueTypeCount) {
    return Fail(StatusCode::kCorrupt, "bad-value-type",
                "array element type " + std::to_string(*et) + " is not a GGUF type", at);
  }
  auto count = r_.U64();
  if (!count) return Truncated("array length", at + 4);
  ValueType type = static_cast<ValueType>(*et);
  out->element_type = type;
  out->count = *count;
  out->offset = r_.offset();
  if (*count > options_.max_array_elements) {
    return Fail(StatusCode::kCorrupt, "array-too-long",
                "array of " + std::to_string(*count) + " elements exceeds the limit of " +
                    std::to_string(options_.max_array_elements),
                at + 4);
  }
  // Every element takes at least this many bytes; check the claim against what exists before
  // reserving anything.
  std::uint64_t min_elem = type == ValueType::kString  ? 8
                           : type == ValueType::kArray ? 12
                                                       : ValueTypeSize(type);
  std::uint64_t min_bytes;
  if (!core::CheckedMul(*count, min_elem, &min_bytes) || min_bytes > r_.remaining()) {
    return Fail(StatusCode::kCorrupt, "array-out-of-bounds",
                "array of " + std::to_string(*count) + " " + std::string(ValueTypeName(type)) +
                    " elements needs more bytes than the file has left (" +
                    std::to_string(r_.remaining()) + ")",
                at + 4);
  }
  if (type == ValueType::kString) {
    AIRLOCK_TRY(ChargeIndex(*count, at));
    out->strings.reserve(static_cast<std::size_t>(*count));
    for (std::uint64_t i = 0; i < *count; ++i) {
      std::string_view s;
      AIRLOCK_TRY(ReadString("array string", &s));
      if (!bad_utf8_noted_ && !ValidUtf8(s)) {
        bad_utf8_noted_ = true;
        Note("invalid-utf8", "array element " + std::to_string(i) + " is not valid UTF-8",
             r_.offset() - s.size());
      }
      out->strings.push_back(s);
    }
  } else if (type == ValueType::kArray) {
    if (depth + 1 > options_.max_array_depth) {
      return Fail(StatusCode::kLimitExceeded, "array-too-deep",
                  "arrays nested deeper than " + std::to_string(options_.max_array_depth), at);
    }
    if (depth == 0) {
      Note("nested-array",
           "array of arrays: allowed by the spec but rejected by llama.cpp's reader", at);
    }
    AIRLOCK_TRY(ChargeIndex(*count, at));
    out->arrays.resize(static_cast<std::size_t>(*count));
    for (auto& child : out->arrays) AIRLOCK_TRY(ReadArray(depth + 1, &child));
  } else {
    out->raw = *r_.Bytes(min_bytes);
    if (type == ValueType::kBool) {
      for (std::size_t i = 0; i < out->raw.size(); ++i) {
        if (static_cast<std::uint8_t>(out->raw[i]) > 1) {
          Note("bool-not-0-1",
               "bool array element " + std::to_string(i) +
                   " is neither 0 nor 1 (readers disagree on its meaning)",
               out->offset + i);
          break;
        }
      }
    }
  }
  return Status::Ok();
}

Status Parser::ReadValue(ValueType type, int depth, Value* out) {
  out->type_ = type;
  out->offset_ = r_.offset();
  if (type == ValueType::kString) {
    AIRLOCK_TRY(ReadString("string value", &out->s_));
    if (!bad_utf8_noted_ && !ValidUtf8(out->s_)) {
      bad_utf8_noted_ = true;
      Note("invalid-utf8", "string value is not valid UTF-8", out->offset_);
    }
    return Status::Ok();
  }
  if (type == ValueType::kArray) {
    auto arr = std::make_shared<internal::ArrayData>();
    AIRLOCK_TRY(ReadArray(depth, arr.get()));
    out->array_ = std::move(arr);
    return Status::Ok();
  }
  std::size_t sz = ValueTypeSize(type);
  auto b = r_.Bytes(sz);
  if (!b) return Truncated(std::string(ValueTypeName(type)) + " value", out->offset_);
  Scalar s = DecodeScalar(type, b->data());
  out->u_ = s.u;
  out->f_ = s.f;
  if (type == ValueType::kBool && s.u > 1) {
    Note("bool-not-0-1",
         "bool value " + std::to_string(s.u) +
             " is neither 0 nor 1 (readers disagree on its meaning)",
         out->offset_);
  }
  return Status::Ok();
}

Status Parser::ReadHeader(std::uint64_t* n_tensors, std::uint64_t* n_kv) {
  auto magic = r_.Bytes(4);
  if (!magic) return Truncated("the magic", 0);
  if (core::AsStringView(*magic) != "GGUF") {
    return Fail(StatusCode::kCorrupt, "bad-magic", "magic is not \"GGUF\"", 0);
  }
  auto version = r_.U32();
  if (!version) return Truncated("the version", 4);
  if (*version == 0) return Fail(StatusCode::kCorrupt, "bad-version", "version 0 is invalid", 4);
  if ((*version & 0xFFFF) == 0) {
    return Fail(StatusCode::kUnsupported, "big-endian",
                "version " + Hex(*version) + " looks byte-swapped (big-endian file)", 4);
  }
  if (*version == 1) {
    return Fail(StatusCode::kUnsupported, "bad-version", "GGUF version 1 is not supported", 4);
  }
  if (*version > 3) {
    return Fail(StatusCode::kUnsupported, "bad-version",
                "GGUF version " + std::to_string(*version) + " is newer than supported (3)", 4);
  }
  file_.version_ = *version;
  auto nt = r_.U64();
  if (!nt) return Truncated("the tensor count", 8);
  auto nk = r_.U64();
  if (!nk) return Truncated("the metadata count", 16);
  // Each tensor info takes >= 24 bytes (name length, n_dims, type, offset), each KV >= 14
  // (key length, 1 key byte, type, 1 value byte). Checked against the bytes present before any
  // allocation (CVE-2024-21836, CVE-2024-23605).
  std::uint64_t need_t, need_k, need;
  if (*nt > kInt64Max || !core::CheckedMul(*nt, 24, &need_t) || need_t > r_.remaining()) {
    return Fail(StatusCode::kCorrupt, "bad-tensor-count",
                "tensor count " + std::to_string(*nt) + " cannot fit in the file", 8);
  }
  if (*nk > kInt64Max || !core::CheckedMul(*nk, 14, &need_k) || need_k > r_.remaining()) {
    return Fail(StatusCode::kCorrupt, "bad-kv-count",
                "metadata count " + std::to_string(*nk) + " cannot fit in the file", 16);
  }
  if (!core::CheckedAdd(need_t, need_k, &need) || need > r_.remaining()) {
    return Fail(StatusCode::kCorrupt, "bad-kv-count",
                "tensor and metadata counts cannot both fit in the file", 8);
  }
  *n_tensors = *nt;
  *n_kv = *nk;
  return Status::Ok();
}

Status Parser::ReadKv() {
  KeyValue kv;
  kv.offset = r_.offset();
  AIRLOCK_TRY(ReadString("metadata key", &kv.key));
  if (kv.key.empty())
    return Fail(StatusCode::kCorrupt, "empty-key", "empty metadata key", kv.offset);
  if (!ValidKeyGrammar(kv.key)) {
    Note("key-grammar",
         "metadata key \"" + std::string(kv.key.substr(0, 80)) +
             "\" is not lower_snake_case segments joined by '.'",
         kv.offset);
  }
  auto type_at = r_.offset();
  auto type = r_.U32();
  if (!type) return Truncated("a metadata value type", type_at);
  if (*type >= kValueTypeCount) {
    return Fail(StatusCode::kCorrupt, "bad-value-type",
                "metadata value type " + std::to_string(*type) + " of key \"" +
                    std::string(kv.key.substr(0, 80)) + "\" is not a GGUF type",
                type_at);
  }
  AIRLOCK_TRY(ReadValue(static_cast<ValueType>(*type), 0, &kv.value));
  auto [it, inserted] = file_.kv_index_.emplace(kv.key, file_.kvs_.size());
  if (!inserted) {
    return Fail(StatusCode::kCorrupt, "duplicate-key",
                "duplicate metadata key \"" + std::string(kv.key.substr(0, 80)) + "\"", kv.offset);
  }
  file_.kvs_.push_back(std::move(kv));
  return Status::Ok();
}

Status Parser::ReadTensorInfo() {
  TensorInfo t;
  t.info_offset = r_.offset();
  AIRLOCK_TRY(ReadString("tensor name", &t.name));
  std::string shown(t.name.substr(0, 80));
  if (t.name.size() > kMaxTensorNameLength) {
    return Fail(StatusCode::kCorrupt, "tensor-name-too-long",
                "tensor name of " + std::to_string(t.name.size()) + " bytes exceeds " +
                    std::to_string(kMaxTensorNameLength),
                t.info_offset);
  }
  if (t.name.empty() || !PrintableAscii(t.name)) {
    Note("tensor-name-charset", "tensor name \"" + shown + "\" is empty or not printable ASCII",
         t.info_offset);
  }
  auto dims_at = r_.offset();
  auto n_dims = r_.U32();
  if (!n_dims) return Truncated("a tensor's dimension count", dims_at);
  if (*n_dims > kMaxDims) {
    return Fail(StatusCode::kCorrupt, "bad-n-dims",
                "tensor \"" + shown + "\" has " + std::to_string(*n_dims) + " dimensions (max 4)",
                dims_at);
  }
  t.n_dims = *n_dims;
  u128 elements = 1;
  for (std::uint32_t j = 0; j < t.n_dims; ++j) {
    auto ne = r_.U64();
    if (!ne) return Truncated("a tensor's shape", r_.offset());
    if (*ne > kInt64Max) {
      return Fail(StatusCode::kCorrupt, "bad-shape",
                  "tensor \"" + shown + "\" dimension " + std::to_string(j) + " is negative",
                  dims_at + 4 + 8 * j);
    }
    t.ne[j] = *ne;
    // Saturating product in 128 bits: four factors < 2^63 can overflow 128 bits, so stop
    // multiplying once past int64 (llama.cpp issue #27203: a wrapped product skipped the check).
    if (elements <= kInt64Max)
      elements *= *ne;
    else if (*ne == 0)
      elements = 0;
  }
  for (std::uint32_t j = 0; j < t.n_dims; ++j) {
    if (t.ne[j] == 0) {
      Note("zero-dim", "tensor \"" + shown + "\" has a zero-length dimension (empty tensor)",
           t.info_offset);
      elements = 0;
      break;
    }
  }
  if (elements > kInt64Max) {
    return Fail(StatusCode::kCorrupt, "bad-shape",
                "tensor \"" + shown + "\" element count does not fit in int64", dims_at);
  }
  t.n_elements = static_cast<std::uint64_t>(elements);
  auto type_at = r_.offset();
  auto type = r_.U32();
  if (!type) return Truncated("a tensor's type", type_at);
  t.type = *type;
  const TypeTraits* tt = GetTypeTraits(*type);
  if (tt == nullptr) {
    return Fail(*type < kGgmlTypeCount ? StatusCode::kUnsupported : StatusCode::kCorrupt,
                "bad-tensor-type",
                "tensor \"" + shown + "\" has " +
                    (*type < kGgmlTypeCount ? "removed ggml type " + GgmlTypeName(*type)
                                            : "unknown ggml type " + std::to_string(*type)),
                type_at);
  }
  if (t.ne[0] % tt->block_size != 0) {
    return Fail(StatusCode::kCorrupt, "bad-shape",
                "tensor \"" + shown + "\" row length " + std::to_string(t.ne[0]) +
                    " is not a multiple of the " + std::string(tt->name) + " block size " +
                    std::to_string(tt->block_size),
                dims_at + 4);
  }
  // nbytes = nelements / block * type_size in 128 bits (PR #27200: ne0*type_size/blck wrapped).
  u128 nbytes = static_cast<u128>(t.n_elements / tt->block_size) * tt->type_size;
  if (nbytes > kInt64Max) {
    return Fail(StatusCode::kCorrupt, "tensor-too-large",
                "tensor \"" + shown + "\" byte size does not fit in int64", dims_at);
  }
  t.n_bytes = static_cast<std::uint64_t>(nbytes);
  auto off = r_.U64();
  if (!off) return Truncated("a tensor's offset", r_.offset());
  t.offset = *off;
  auto [it, inserted] = file_.tensor_index_.emplace(t.name, file_.tensors_.size());
  if (!inserted) {
    return Fail(StatusCode::kCorrupt, "duplicate-tensor-name",
                "duplicate tensor name \"" + shown + "\"", t.info_offset);
  }
  file_.tensors_.push_back(t);
  return Status::Ok();
}

Result<File> Parser::Run() {
  std::uint64_t n_tensors = 0, n_kv = 0;
  AIRLOCK_TRY(ReadHeader(&n_tensors, &n_kv));
  file_.kvs_.reserve(static_cast<std::size_t>(n_kv));
  file_.kv_index_.reserve(static_cast<std::size_t>(n_kv));
  for (std::uint64_t i = 0; i < n_kv; ++i) AIRLOCK_TRY(ReadKv());

  if (const KeyValue* a = file_.Find("general.alignment")) {
    if (a->value.type() != ValueType::kUint32) {
      return Fail(StatusCode::kCorrupt, "bad-alignment",
                  "general.alignment has type " + std::string(ValueTypeName(a->value.type())) +
                      ", not uint32",
                  a->offset);
    }
    std::uint64_t v = *a->value.AsUint();
    if (v == 0 || (v & (v - 1)) != 0) {
      return Fail(StatusCode::kCorrupt, "bad-alignment",
                  "general.alignment " + std::to_string(v) + " is not a non-zero power of two",
                  a->value.offset());
    }
    file_.alignment_ = static_cast<std::uint32_t>(v);
  }
  const std::uint64_t align = file_.alignment_;

  file_.tensors_.reserve(static_cast<std::size_t>(n_tensors));
  file_.tensor_index_.reserve(static_cast<std::size_t>(n_tensors));
  for (std::uint64_t i = 0; i < n_tensors; ++i) AIRLOCK_TRY(ReadTensorInfo());

  const std::uint64_t infos_end = r_.offset();
  const std::uint64_t size = file_.bytes_.size();
  std::uint64_t data_offset;
  if (!PadChecked(infos_end, align, &data_offset)) {
    return Fail(StatusCode::kCorrupt, "data-out-of-bounds", "data section offset overflows",
                infos_end);
  }
  if (n_tensors == 0) {
    // No data section: the file may end right after the metadata or after zero padding.
    file_.data_offset_ = infos_end;
    std::uint64_t pad_end = std::min(data_offset, size);
    if (!AllZero(file_.bytes_.subspan(infos_end, pad_end - infos_end))) {
      Note("nonzero-padding", "padding after the metadata is not all zero bytes", infos_end);
    }
    if (size > data_offset) {
      Note("trailing-data",
           std::to_string(size - data_offset) +
               " bytes after the end of the GGUF structure (appended payload or polyglot file)",
           data_offset);
    }
    return std::move(file_);
  }
  if (data_offset > size) {
    return Fail(StatusCode::kCorrupt, "data-out-of-bounds",
                "tensor data section starts at " + std::to_string(data_offset) +
                    ", past the end of the file (" + std::to_string(size) + " bytes)",
                infos_end);
  }
  if (!AllZero(file_.bytes_.subspan(infos_end, data_offset - infos_end))) {
    Note("nonzero-padding", "padding before the tensor data is not all zero bytes", infos_end);
  }
  file_.data_offset_ = data_offset;

  // Offsets must be exactly the running sum of padded sizes, in tensor-info order (what
  // gguf.cpp requires): this rules out gaps, overlaps and reordering in one check.
  std::uint64_t expected = 0;
  for (const TensorInfo& t : file_.tensors_) {
    std::string shown(t.name.substr(0, 80));
    std::uint64_t off_field = t.info_offset + 8 + t.name.size() + 4 + 8ull * t.n_dims + 4;
    if (t.offset % align != 0) {
      return Fail(StatusCode::kCorrupt, "misaligned-offset",
                  "tensor \"" + shown + "\" offset " + std::to_string(t.offset) +
                      " is not a multiple of the alignment " + std::to_string(align),
                  off_field);
    }
    if (t.offset != expected) {
      bool overlap = t.offset < expected;
      return Fail(StatusCode::kCorrupt, overlap ? "tensor-overlap" : "tensor-gap",
                  "tensor \"" + shown + "\" offset " + std::to_string(t.offset) +
                      (overlap ? " overlaps the previous tensor's data (expected "
                               : " leaves a gap after the previous tensor (expected ") +
                      std::to_string(expected) + ")",
                  off_field);
    }
    std::uint64_t abs_begin, abs_end, padded;
    if (!core::CheckedAdd(data_offset, t.offset, &abs_begin) ||
        !core::CheckedAdd(abs_begin, t.n_bytes, &abs_end) || abs_end > size) {
      return Fail(StatusCode::kCorrupt, "tensor-out-of-bounds",
                  "tensor \"" + shown + "\" data (" + std::to_string(t.n_bytes) +
                      " bytes at data offset " + std::to_string(t.offset) +
                      ") extends past the end of the file",
                  off_field);
    }
    if (!PadChecked(t.n_bytes, align, &padded) || !core::CheckedAdd(expected, padded, &expected)) {
      return Fail(StatusCode::kCorrupt, "tensor-out-of-bounds",
                  "tensor \"" + shown + "\" padded size overflows", off_field);
    }
    if (options_.check_tensor_padding) {
      std::uint64_t pad_end = std::min<std::uint64_t>(size, abs_end + (padded - t.n_bytes));
      if (!AllZero(file_.bytes_.subspan(abs_end, pad_end - abs_end))) {
        Note("nonzero-padding", "padding after tensor \"" + shown + "\" is not all zero bytes",
             abs_end);
      }
    }
  }
  file_.data_size_ = expected;
  std::uint64_t end;
  if (core::CheckedAdd(data_offset, expected, &end) && size > end) {
    Note("trailing-data",
         std::to_string(size - end) +
             " bytes after the last tensor's data (appended payload or polyglot file)",
         end);
  }
  return std::move(file_);
}

// ---------------------------------------------------------------------------------------------
// File

Result<File> File::Parse(std::span<const std::byte> data, const ParseOptions& options,
                         ParseFailure* failure) {
  Parser p(data, options, failure);
  return p.Run();
}

const KeyValue* File::Find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second];
}

std::optional<std::string_view> File::GetString(std::string_view key) const {
  const KeyValue* kv = Find(key);
  return kv ? kv->value.AsString() : std::nullopt;
}
std::optional<std::uint64_t> File::GetUint(std::string_view key) const {
  const KeyValue* kv = Find(key);
  return kv ? kv->value.AsUint() : std::nullopt;
}
std::optional<std::int64_t> File::GetInt(std::string_view key) const {
  const KeyValue* kv = Find(key);
  return kv ? kv->value.AsInt() : std::nullopt;
}
std::optional<double> File::GetFloat(std::string_view key) const {
  const KeyValue* kv = Find(key);
  return kv ? kv->value.AsFloat() : std::nullopt;
}
std::optional<bool> File::GetBool(std::string_view key) const {
  const KeyValue* kv = Find(key);
  return kv ? kv->value.AsBool() : std::nullopt;
}
std::optional<ArrayView> File::GetArray(std::string_view key) const {
  const KeyValue* kv = Find(key);
  return kv ? kv->value.AsArray() : std::nullopt;
}
std::string_view File::architecture() const {
  return GetString("general.architecture").value_or("");
}

const TensorInfo* File::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

std::span<const std::byte> File::TensorData(const TensorInfo& info) const {
  // Parse guaranteed data_offset + offset + n_bytes <= size for every tensor it returned.
  std::uint64_t begin = data_offset_ + info.offset;
  if (begin > bytes_.size() || info.n_bytes > bytes_.size() - begin) return {};
  return bytes_.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(info.n_bytes));
}

}  // namespace airlock::formats::gguf
