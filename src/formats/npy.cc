#include "formats/npy.h"

#include <memory>
#include <string_view>
#include <variant>

#include "core/bytes.h"

namespace airlock::formats::npy {
namespace {

constexpr int kMaxDepth = 16;
constexpr std::uint64_t kMaxHeaderBytes = 1u << 20;  // far above numpy's own 10000

// A Python literal value, as ast.literal_eval would produce for the subset numpy writes.
struct Value;
using ValuePtr = std::unique_ptr<Value>;
struct Value {
  enum class Kind { kStr, kInt, kBool, kNone, kTuple, kList, kDict } kind;
  std::string str;
  std::uint64_t integer = 0;
  bool negative = false;
  bool boolean = false;
  std::vector<ValuePtr> items;                            // tuple, list
  std::vector<std::pair<std::string, ValuePtr>> entries;  // dict (string keys only)
};

class LiteralParser {
 public:
  explicit LiteralParser(std::string_view text) : text_(text) {}

  Result<ValuePtr> ParseTop() {
    AIRLOCK_ASSIGN_OR_RETURN(ValuePtr v, ParseValue(0));
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the header dict");
    return v;
  }

 private:
  Status Error(std::string what) const {
    return Corrupt("npy: header at byte " + std::to_string(pos_) + ": " + std::move(what));
  }
  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r'))
      ++pos_;
  }
  bool Eat(char c) {
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }

  Result<ValuePtr> ParseValue(int depth) {
    if (depth > kMaxDepth) return Error("nesting too deep");
    SkipSpace();
    if (pos_ >= text_.size()) return Error("unexpected end");
    char c = text_[pos_];
    auto v = std::make_unique<Value>();
    if (c == '\'' || c == '"') {
      v->kind = Value::Kind::kStr;
      AIRLOCK_ASSIGN_OR_RETURN(v->str, ParseString());
      return v;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      v->kind = Value::Kind::kInt;
      if (c == '-') {
        v->negative = true;
        ++pos_;
      }
      std::size_t start = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        std::uint64_t next = 0;
        if (!core::CheckedMul(v->integer, 10, &next) ||
            !core::CheckedAdd(next, static_cast<std::uint64_t>(text_[pos_] - '0'), &v->integer))
          return Error("integer too large");
        ++pos_;
      }
      if (pos_ == start) return Error("expected digits");
      // Python 2 long suffix, which numpy strips from version 1/2 headers.
      if (pos_ < text_.size() && (text_[pos_] == 'L' || text_[pos_] == 'l')) ++pos_;
      return v;
    }
    for (auto [word, kind, b] : {std::tuple{"True", Value::Kind::kBool, true},
                                 std::tuple{"False", Value::Kind::kBool, false},
                                 std::tuple{"None", Value::Kind::kNone, false}}) {
      std::string_view w(word);
      if (text_.substr(pos_, w.size()) == w) {
        pos_ += w.size();
        v->kind = kind;
        v->boolean = b;
        return v;
      }
    }
    if (c == '(' || c == '[') {
      char close = c == '(' ? ')' : ']';
      v->kind = c == '(' ? Value::Kind::kTuple : Value::Kind::kList;
      ++pos_;
      bool trailing_comma = false;
      while (!Eat(close)) {
        if (!v->items.empty() && !trailing_comma) return Error("expected ',' or closing bracket");
        AIRLOCK_ASSIGN_OR_RETURN(ValuePtr item, ParseValue(depth + 1));
        v->items.push_back(std::move(item));
        trailing_comma = Eat(',');
      }
      // (x) is just x in Python; only (x,) is a one-tuple.
      if (v->kind == Value::Kind::kTuple && v->items.size() == 1 && !trailing_comma)
        return std::move(v->items.front());
      return v;
    }
    if (c == '{') {
      v->kind = Value::Kind::kDict;
      ++pos_;
      bool trailing_comma = false;
      while (!Eat('}')) {
        if (!v->entries.empty() && !trailing_comma) return Error("expected ',' or '}'");
        SkipSpace();
        if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"'))
          return Error("dict keys must be strings");
        AIRLOCK_ASSIGN_OR_RETURN(std::string key, ParseString());
        if (!Eat(':')) return Error("expected ':'");
        AIRLOCK_ASSIGN_OR_RETURN(ValuePtr item, ParseValue(depth + 1));
        for (const auto& [k, unused] : v->entries) {
          if (k == key) return Error("duplicate key '" + key + "'");
        }
        v->entries.emplace_back(std::move(key), std::move(item));
        trailing_comma = Eat(',');
      }
      return v;
    }
    return Error(std::string("unexpected character '") + c + "'");
  }

  // A Python string literal with the simple escapes numpy's repr() can produce.
  Result<std::string> ParseString() {
    char quote = text_[pos_++];
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      char c = text_[pos_++];
      if (c == quote) return out;
      if (c == '\n') return Error("newline in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '\\':
        case '\'':
        case '"':
          out += e;
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        case 'r':
          out += '\r';
          break;
        case '0':
          out += '\0';
          break;
        case 'x': {
          if (pos_ + 2 > text_.size()) return Error("bad \\x escape");
          int v = 0;
          for (int i = 0; i < 2; ++i) {
            char h = text_[pos_++];
            int d = (h >= '0' && h <= '9')   ? h - '0'
                    : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                    : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                             : -1;
            if (d < 0) return Error("bad \\x escape");
            v = v * 16 + d;
          }
          out += static_cast<char>(v);
          break;
        }
        default:
          return Error(std::string("unsupported escape '\\") + e + "'");
      }
    }
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

struct DtypeInfo {
  std::uint64_t item_size = 0;
  bool has_object = false;
};

// numpy typestr: [byteorder] kind [size] [ '[' unit ']' ] for datetimes.
Result<DtypeInfo> ParseTypestr(std::string_view s) {
  auto bad = [&] {
    return Unsupported("npy: unsupported dtype '" + std::string(s.substr(0, 64)) + "'");
  };
  std::size_t i = 0;
  if (i < s.size() && (s[i] == '<' || s[i] == '>' || s[i] == '|' || s[i] == '=')) ++i;
  if (i >= s.size()) return bad();
  char kind = s[i++];
  std::uint64_t size = 0;
  bool has_size = false;
  while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
    std::uint64_t next = 0;
    if (!core::CheckedMul(size, 10, &next) || !core::CheckedAdd(next, s[i] - '0', &size))
      return bad();
    has_size = true;
    ++i;
  }
  if ((kind == 'M' || kind == 'm') && i < s.size() && s[i] == '[') {
    std::size_t close = s.find(']', i);
    if (close == std::string_view::npos || close + 1 != s.size()) return bad();
    for (std::size_t k = i + 1; k < close; ++k) {
      char u = s[k];
      if (!((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9')))
        return bad();
    }
    i = close + 1;
  }
  if (i != s.size()) return bad();
  DtypeInfo d;
  switch (kind) {
    case 'O':
      if (has_size && size != 8 && size != 4) return bad();
      d.has_object = true;
      return d;
    case 'b':
    case '?':
      d.item_size = has_size ? size : 1;
      if (d.item_size != 1) return bad();
      return d;
    case 'i':
    case 'u':
      d.item_size = has_size ? size : 0;
      if (d.item_size != 1 && d.item_size != 2 && d.item_size != 4 && d.item_size != 8)
        return bad();
      return d;
    case 'f':
      d.item_size = has_size ? size : 0;
      if (d.item_size != 2 && d.item_size != 4 && d.item_size != 8 && d.item_size != 16 &&
          d.item_size != 12)
        return bad();
      return d;
    case 'c':
      d.item_size = has_size ? size : 0;
      if (d.item_size != 8 && d.item_size != 16 && d.item_size != 32 && d.item_size != 24)
        return bad();
      return d;
    case 'M':
    case 'm':
      d.item_size = has_size ? size : 0;
      if (d.item_size != 8) return bad();
      return d;
    case 'S':
    case 'a':
    case 'V':
      d.item_size = has_size ? size : 0;
      return d;
    case 'U':
      if (!core::CheckedMul(has_size ? size : 0, 4, &d.item_size)) return bad();
      return d;
    default:
      return bad();
  }
}

Result<std::uint64_t> ShapeCount(const Value& v, std::vector<std::uint64_t>* dims) {
  if (v.kind == Value::Kind::kInt) {
    if (v.negative) return Corrupt("npy: negative dimension");
    if (dims) dims->push_back(v.integer);
    return v.integer;
  }
  if (v.kind != Value::Kind::kTuple) return Corrupt("npy: shape is not a tuple of integers");
  std::uint64_t count = 1;
  for (const auto& item : v.items) {
    if (item->kind != Value::Kind::kInt || item->negative)
      return Corrupt("npy: shape is not a tuple of non-negative integers");
    if (dims) dims->push_back(item->integer);
    if (!core::CheckedMul(count, item->integer, &count))
      return Corrupt("npy: element count overflows");
  }
  return count;
}

Result<DtypeInfo> ParseDescr(const Value& v, int depth) {
  if (depth > kMaxDepth) return Corrupt("npy: dtype nesting too deep");
  if (v.kind == Value::Kind::kStr) return ParseTypestr(v.str);
  if (v.kind != Value::Kind::kList) return Corrupt("npy: 'descr' is neither a string nor a list");
  DtypeInfo total;
  for (const auto& field : v.items) {
    if (field->kind != Value::Kind::kTuple || field->items.size() < 2 || field->items.size() > 3)
      return Corrupt("npy: structured dtype field is not a (name, dtype[, shape]) tuple");
    const Value& name = *field->items[0];
    bool name_ok = name.kind == Value::Kind::kStr ||
                   (name.kind == Value::Kind::kTuple && name.items.size() == 2 &&
                    name.items[1]->kind == Value::Kind::kStr);
    if (!name_ok) return Corrupt("npy: structured dtype field name is not a string");
    AIRLOCK_ASSIGN_OR_RETURN(DtypeInfo sub, ParseDescr(*field->items[1], depth + 1));
    std::uint64_t count = 1;
    if (field->items.size() == 3) {
      AIRLOCK_ASSIGN_OR_RETURN(count, ShapeCount(*field->items[2], nullptr));
    }
    std::uint64_t bytes = 0;
    // Object fields take a pointer each inside the record.
    std::uint64_t each = sub.has_object && sub.item_size == 0 ? 8 : sub.item_size;
    if (!core::CheckedMul(each, count, &bytes) ||
        !core::CheckedAdd(total.item_size, bytes, &total.item_size))
      return Corrupt("npy: structured dtype size overflows");
    total.has_object |= sub.has_object;
  }
  return total;
}

}  // namespace

Result<Header> ParseHeader(std::span<const std::byte> data) {
  core::ByteReader r(data);
  auto magic = r.String(6);
  if (!magic || *magic != std::string_view("\x93NUMPY", 6)) return Corrupt("npy: bad magic");
  Header h;
  auto major = r.U8(), minor = r.U8();
  if (!major || !minor) return Corrupt("npy: truncated version");
  h.major = *major;
  h.minor = *minor;
  if (h.major == 1) {
    auto len = r.U16();
    if (!len) return Corrupt("npy: truncated header length");
    h.header_len = *len;
  } else if (h.major == 2 || h.major == 3) {
    auto len = r.U32();
    if (!len) return Corrupt("npy: truncated header length");
    h.header_len = *len;
  } else {
    return Unsupported("npy: unknown format version " + std::to_string(h.major) + "." +
                       std::to_string(h.minor));
  }
  if (h.header_len > kMaxHeaderBytes) {
    return Corrupt("npy: header of " + std::to_string(h.header_len) +
                   " bytes is implausibly large");
  }
  auto text = r.String(h.header_len);
  if (!text) {
    return Corrupt("npy: header declares " + std::to_string(h.header_len) + " bytes but only " +
                   std::to_string(r.remaining()) + " remain");
  }
  h.data_offset = r.offset();
  LiteralParser parser(*text);
  AIRLOCK_ASSIGN_OR_RETURN(ValuePtr dict, parser.ParseTop());
  if (dict->kind != Value::Kind::kDict) return Corrupt("npy: header is not a dict");
  const Value* descr = nullptr;
  const Value* fortran = nullptr;
  const Value* shape = nullptr;
  for (const auto& [key, value] : dict->entries) {
    if (key == "descr")
      descr = value.get();
    else if (key == "fortran_order")
      fortran = value.get();
    else if (key == "shape")
      shape = value.get();
    else
      return Corrupt("npy: unexpected header key '" + key.substr(0, 64) + "'");
  }
  if (!descr || !fortran || !shape)
    return Corrupt("npy: header lacks descr, fortran_order or shape");
  if (fortran->kind != Value::Kind::kBool) return Corrupt("npy: fortran_order is not a bool");
  h.fortran_order = fortran->boolean;
  if (shape->kind != Value::Kind::kTuple) return Corrupt("npy: shape is not a tuple");
  AIRLOCK_ASSIGN_OR_RETURN(std::uint64_t count, ShapeCount(*shape, &h.shape));
  AIRLOCK_ASSIGN_OR_RETURN(DtypeInfo dtype, ParseDescr(*descr, 0));
  h.descr = descr->kind == Value::Kind::kStr ? descr->str.substr(0, 64) : "structured";
  h.has_object = dtype.has_object;
  h.item_size = dtype.has_object ? 0 : dtype.item_size;
  if (!h.has_object) {
    std::uint64_t bytes = 0;
    if (!core::CheckedMul(count, dtype.item_size, &bytes))
      return Corrupt("npy: array size overflows");
    h.data_bytes = bytes;
  }
  return h;
}

}  // namespace airlock::formats::npy
