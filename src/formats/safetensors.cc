#include "formats/safetensors.h"

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <variant>

#include "core/bytes.h"
#include "core/file.h"

namespace airlock::formats::safetensors {

namespace {

struct DtypeEntry {
  std::string_view name;
  std::uint32_t bits;
};
constexpr DtypeEntry kDtypes[] = {
    {"BOOL", 8},        {"F4", 4},      {"F6_E2M3", 6}, {"F6_E3M2", 6}, {"U8", 8},
    {"I8", 8},          {"F8_E5M2", 8}, {"F8_E4M3", 8}, {"F8_E8M0", 8}, {"F8_E4M3FNUZ", 8},
    {"F8_E5M2FNUZ", 8}, {"I16", 16},    {"U16", 16},    {"F16", 16},    {"BF16", 16},
    {"I32", 32},        {"U32", 32},    {"F32", 32},    {"C64", 64},    {"F64", 64},
    {"I64", 64},        {"U64", 64},
};

// A minimal JSON tree built from SAX events, so that duplicate keys, number kinds and nesting
// depth are all visible (a DOM library would silently keep one duplicate and coerce numbers).
struct Node;
using Object = std::vector<std::pair<std::string, std::unique_ptr<Node>>>;
using Array = std::vector<std::unique_ptr<Node>>;
struct Node {
  enum Kind { kNull, kBool, kUint, kNegInt, kFloat, kString, kArray, kObject } kind = kNull;
  std::uint64_t u = 0;
  std::string s;
  Array array;
  Object object;
};

class TreeBuilder : public nlohmann::json_sax<nlohmann::json> {
 public:
  TreeBuilder(int max_depth, std::uint64_t max_nodes)
      : max_depth_(max_depth), max_nodes_(max_nodes) {}

  std::unique_ptr<Node> root;
  std::string error_code;
  std::string error;
  std::uint64_t error_pos = 0;

  bool null() override { return Push(Node::kNull); }
  bool boolean(bool) override { return Push(Node::kBool); }
  bool number_integer(number_integer_t v) override {
    Node* n = PushNode(Node::kNegInt);
    if (n) n->u = static_cast<std::uint64_t>(v);
    if (n && v >= 0) n->kind = Node::kUint;
    return n != nullptr;
  }
  bool number_unsigned(number_unsigned_t v) override {
    Node* n = PushNode(Node::kUint);
    if (n) n->u = v;
    return n != nullptr;
  }
  bool number_float(number_float_t, const string_t&) override { return Push(Node::kFloat); }
  bool string(string_t& v) override {
    Node* n = PushNode(Node::kString);
    if (n) n->s = std::move(v);
    return n != nullptr;
  }
  bool binary(binary_t&) override { return Push(Node::kNull); }
  bool start_object(std::size_t) override { return Open(Node::kObject); }
  bool key(string_t& k) override {
    if (!keys_.back().insert(k).second) {
      return Fail("duplicate-key", "duplicate JSON key \"" + k.substr(0, 80) + "\"");
    }
    pending_key_ = std::move(k);
    return true;
  }
  bool end_object() override {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool start_array(std::size_t) override { return Open(Node::kArray); }
  bool end_array() override {
    stack_.pop_back();
    keys_.pop_back();
    return true;
  }
  bool parse_error(std::size_t position, const std::string&,
                   const nlohmann::detail::exception& ex) override {
    if (error_code.empty()) {
      error_code = "bad-json";
      error = std::string("header is not valid JSON: ") + ex.what();
      error_pos = position;
    }
    return false;
  }

 private:
  bool Fail(std::string code, std::string message) {
    if (error_code.empty()) {
      error_code = std::move(code);
      error = std::move(message);
    }
    return false;
  }
  bool Push(Node::Kind k) { return PushNode(k) != nullptr; }
  // An object or array: a new node that later values nest in, within the depth cap.
  bool Open(Node::Kind k) {
    Node* n = PushNode(k);
    if (!n) return false;
    if (static_cast<int>(stack_.size()) >= max_depth_)
      return Fail("json-too-deep", "header JSON nested too deeply");
    stack_.push_back(n);
    keys_.emplace_back();
    return true;
  }
  Node* PushNode(Node::Kind k) {
    if (++nodes_ > max_nodes_) {
      Fail("header-too-complex",
           "header JSON has more than " + std::to_string(max_nodes_) + " values");
      return nullptr;
    }
    auto node = std::make_unique<Node>();
    node->kind = k;
    Node* raw = node.get();
    if (stack_.empty()) {
      root = std::move(node);
    } else if (stack_.back()->kind == Node::kObject) {
      stack_.back()->object.emplace_back(std::move(pending_key_), std::move(node));
    } else {
      stack_.back()->array.push_back(std::move(node));
    }
    return raw;
  }

  int max_depth_;
  std::uint64_t max_nodes_;
  std::uint64_t nodes_ = 0;
  std::vector<Node*> stack_;
  std::vector<std::set<std::string>> keys_;
  std::string pending_key_;
};

}  // namespace

std::optional<std::uint32_t> DtypeBits(std::string_view dtype) {
  for (const auto& d : kDtypes) {
    if (d.name == dtype) return d.bits;
  }
  return std::nullopt;
}

class HeaderParser {
 public:
  HeaderParser(std::span<const std::byte> data, const ParseOptions& options, ParseFailure* failure)
      : data_(data), options_(options), failure_(failure) {
    file_.bytes_ = data;
  }

  Result<File> Run();

 private:
  Status Fail(StatusCode sc, std::string code, std::string detail, std::uint64_t offset) {
    std::string msg = "safetensors: " + detail + " at offset " + std::to_string(offset);
    if (failure_) {
      failure_->code = code;
      failure_->message = detail;
      failure_->offset = offset;
    }
    return Status(sc, msg);
  }
  Status Corrupt(std::string code, std::string detail, std::uint64_t offset = 8) {
    return Fail(StatusCode::kCorrupt, std::move(code), std::move(detail), offset);
  }
  Status ParseTensor(const std::string& name, const Node& node);

  std::span<const std::byte> data_;
  const ParseOptions& options_;
  ParseFailure* failure_;
  File file_;
};

Status HeaderParser::ParseTensor(const std::string& name, const Node& node) {
  std::string shown = name.substr(0, 80);
  if (node.kind != Node::kObject) {
    return Corrupt("bad-tensor-entry", "entry \"" + shown + "\" is not an object");
  }
  TensorInfo t;
  t.name = name;
  bool has_dtype = false, has_shape = false, has_offsets = false;
  for (const auto& [field, value] : node.object) {
    if (field == "dtype") {
      if (value->kind != Node::kString) {
        return Corrupt("bad-tensor-entry", "tensor \"" + shown + "\" dtype is not a string");
      }
      auto bits = DtypeBits(value->s);
      if (!bits) {
        return Corrupt("bad-dtype", "tensor \"" + shown + "\" has unknown dtype \"" +
                                        value->s.substr(0, 40) + "\"");
      }
      t.dtype = value->s;
      t.dtype_bits = *bits;
      has_dtype = true;
    } else if (field == "shape") {
      if (value->kind != Node::kArray) {
        return Corrupt("bad-tensor-entry", "tensor \"" + shown + "\" shape is not an array");
      }
      for (const auto& d : value->array) {
        if (d->kind != Node::kUint) {
          return Corrupt("non-integer",
                         "tensor \"" + shown + "\" shape has a non-integer or negative entry");
        }
        t.shape.push_back(d->u);
      }
      has_shape = true;
    } else if (field == "data_offsets") {
      if (value->kind != Node::kArray || value->array.size() != 2) {
        return Corrupt("bad-tensor-entry",
                       "tensor \"" + shown + "\" data_offsets is not a pair of integers");
      }
      for (const auto& d : value->array) {
        if (d->kind != Node::kUint) {
          return Corrupt("non-integer", "tensor \"" + shown +
                                            "\" data_offsets has a non-integer or negative entry");
        }
      }
      t.begin = value->array[0]->u;
      t.end = value->array[1]->u;
      has_offsets = true;
    } else {
      file_.issues_.push_back({"unknown-field",
                               "tensor \"" + shown + "\" has unknown field \"" +
                                   field.substr(0, 40) +
                                   "\" (ignored by the reference loader; may hide data)",
                               8});
    }
  }
  if (!has_dtype || !has_shape || !has_offsets) {
    return Corrupt("bad-tensor-entry",
                   "tensor \"" + shown + "\" lacks dtype, shape or data_offsets");
  }
  std::uint64_t n = 1;
  for (std::uint64_t d : t.shape) {
    if (!core::CheckedMul(n, d, &n)) {
      return Corrupt("size-overflow", "tensor \"" + shown + "\" element count overflows");
    }
  }
  t.n_elements = n;
  std::uint64_t bits;
  if (!core::CheckedMul(n, t.dtype_bits, &bits)) {
    return Corrupt("size-overflow", "tensor \"" + shown + "\" bit size overflows");
  }
  if (bits % 8 != 0) {
    return Corrupt("misaligned-slice",
                   "tensor \"" + shown + "\" does not fill a whole number of bytes");
  }
  if (t.end < t.begin || t.end - t.begin != bits / 8) {
    return Corrupt("tensor-size-mismatch",
                   "tensor \"" + shown + "\" data_offsets [" + std::to_string(t.begin) + ", " +
                       std::to_string(t.end) + "] do not match its shape and dtype (" +
                       std::to_string(bits / 8) + " bytes)");
  }
  file_.tensors_.push_back(std::move(t));
  return Status::Ok();
}

Result<File> HeaderParser::Run() {
  core::ByteReader r(data_);
  auto n = r.U64();
  if (!n) return Corrupt("truncated", "file is shorter than the 8-byte header length", 0);
  if (*n > options_.max_header_size) {
    return Fail(StatusCode::kLimitExceeded, "header-too-large",
                "header length " + std::to_string(*n) + " exceeds " +
                    std::to_string(options_.max_header_size),
                0);
  }
  if (*n > r.remaining()) {
    return Corrupt("header-out-of-bounds",
                   "header length " + std::to_string(*n) + " runs past the end of the file", 0);
  }
  file_.header_size_ = *n;
  std::string_view header = core::AsStringView(*r.Bytes(*n));
  if (header.empty() || header[0] != '{') {
    return Corrupt("bad-header-start", "header does not start with '{'");
  }
  // The reference allows right-padding with spaces; other whitespace is accepted by its JSON
  // parser but not by the format description.
  std::size_t end = header.size();
  while (end > 0 && header[end - 1] == ' ') --end;
  std::string_view json = header.substr(0, end);
  if (!json.empty() && json.back() != '}') {
    std::size_t e2 = json.find_last_not_of(" \t\r\n");
    if (e2 != std::string_view::npos && json[e2] == '}') {
      file_.issues_.push_back(
          {"header-padding", "header is padded with whitespace other than spaces", 8 + e2 + 1});
    }
  }

  TreeBuilder builder(options_.max_json_depth, options_.max_json_values);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(json.begin(), json.end(), &builder,
                                   nlohmann::json::input_format_t::json, /*strict=*/true);
  } catch (const std::exception& e) {
    ok = false;
    if (builder.error_code.empty()) {
      builder.error_code = "bad-json";
      builder.error = std::string("header is not valid JSON: ") + e.what();
    }
  }
  if (!ok || !builder.root) {
    StatusCode sc =
        builder.error_code == "json-too-deep" || builder.error_code == "header-too-complex"
            ? StatusCode::kLimitExceeded
            : StatusCode::kCorrupt;
    return Fail(sc, builder.error_code.empty() ? "bad-json" : builder.error_code,
                builder.error.empty() ? "header is not valid JSON" : builder.error,
                8 + builder.error_pos);
  }
  const Node& root = *builder.root;
  if (root.kind != Node::kObject) return Corrupt("bad-json", "header is not a JSON object");

  for (const auto& [key, value] : root.object) {
    if (key == "__metadata__") {
      if (value->kind != Node::kObject) {
        return Corrupt("bad-metadata", "__metadata__ is not an object");
      }
      for (const auto& [mk, mv] : value->object) {
        if (mv->kind != Node::kString) {
          return Corrupt("bad-metadata",
                         "__metadata__ value of \"" + mk.substr(0, 80) + "\" is not a string");
        }
        file_.metadata_.emplace_back(mk, mv->s);
      }
      continue;
    }
    AIRLOCK_TRY(ParseTensor(key, *value));
  }

  // Offsets must tile the byte buffer exactly from 0, in offset order (no gaps, no overlap).
  std::vector<const TensorInfo*> order;
  order.reserve(file_.tensors_.size());
  for (const TensorInfo& t : file_.tensors_) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const TensorInfo* a, const TensorInfo* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  std::uint64_t expected = 0;
  for (const TensorInfo* t : order) {
    if (t->begin != expected) {
      bool overlap = t->begin < expected;
      return Corrupt(overlap ? "tensor-overlap" : "tensor-gap",
                     "tensor \"" + t->name.substr(0, 80) + "\" starts at " +
                         std::to_string(t->begin) +
                         (overlap ? ", overlapping" : ", leaving a gap after") +
                         " the previous tensor (expected " + std::to_string(expected) + ")");
    }
    expected = t->end;
  }
  std::uint64_t data_len = data_.size() - 8 - *n;
  if (expected > data_len) {
    return Corrupt("tensor-out-of-bounds",
                   "tensor data needs " + std::to_string(expected) + " bytes but the file has " +
                       std::to_string(data_len),
                   8 + *n);
  }
  if (expected < data_len) {
    return Corrupt("trailing-data",
                   std::to_string(data_len - expected) +
                       " bytes after the last tensor (appended payload or polyglot file)",
                   8 + *n + expected);
  }
  return std::move(file_);
}

Result<File> File::Parse(std::span<const std::byte> data, const ParseOptions& options,
                         ParseFailure* failure) {
  HeaderParser p(data, options, failure);
  return p.Run();
}

std::string_view File::header_json() const {
  return core::AsStringView(bytes_.subspan(8, static_cast<std::size_t>(header_size_)));
}

std::optional<std::string_view> File::GetMetadata(std::string_view key) const {
  for (const auto& [k, v] : metadata_) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

const TensorInfo* File::FindTensor(std::string_view name) const {
  for (const TensorInfo& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

std::span<const std::byte> File::TensorData(const TensorInfo& info) const {
  std::uint64_t begin = data_offset() + info.begin;
  if (begin > bytes_.size() || info.end - info.begin > bytes_.size() - begin) return {};
  return bytes_.subspan(static_cast<std::size_t>(begin),
                        static_cast<std::size_t>(info.end - info.begin));
}

}  // namespace airlock::formats::safetensors
