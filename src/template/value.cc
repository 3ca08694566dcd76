#include "template/value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "template/internal/strings.h"

namespace airlock::tmpl {
namespace {

const std::string kEmptyString;
const StringData kEmptyStringData;
const std::vector<Value> kEmptyItems;
const std::vector<std::pair<std::string, Value>> kEmptyEntries;
constexpr int kMaxDepth = 128;
const std::string kComma = ",";
const std::string kCommaSpace = ", ";

}  // namespace

Value Value::Undefined(std::string name) {
  Value v;
  v.name_ = std::move(name);
  return v;
}
Value Value::None() {
  Value v;
  v.kind_ = Kind::kNone;
  return v;
}
Value Value::Bool(bool b) {
  Value v;
  v.kind_ = Kind::kBool;
  v.b_ = b;
  return v;
}
Value Value::Int(std::int64_t i) {
  Value v;
  v.kind_ = Kind::kInt;
  v.i_ = i;
  return v;
}
Value Value::Float(double f) {
  Value v;
  v.kind_ = Kind::kFloat;
  v.f_ = f;
  return v;
}
Value Value::String(std::string text, bool is_input) {
  StringData d;
  if (is_input && !text.empty()) d.input.push_back({0, text.size()});
  d.text = std::move(text);
  return String(std::move(d));
}
Value Value::String(StringData data) {
  Value v;
  v.kind_ = Kind::kString;
  v.s_ = std::make_shared<const StringData>(std::move(data));
  return v;
}
Value Value::List(std::vector<Value> items) {
  Value v;
  v.kind_ = Kind::kList;
  v.list_ = std::make_shared<ListData>();
  v.list_->items = std::move(items);
  return v;
}
Value Value::Dict(bool keys_are_input) {
  Value v;
  v.kind_ = Kind::kDict;
  v.dict_ = std::make_shared<DictData>();
  v.dict_->keys_are_input = keys_are_input;
  return v;
}
Value Value::Callable(std::shared_ptr<const CallableData> fn) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.fn_ = std::move(fn);
  return v;
}

const std::string& Value::str() const { return s_ ? s_->text : kEmptyString; }
const StringData& Value::string_data() const { return s_ ? *s_ : kEmptyStringData; }
const std::vector<Value>& Value::items() const { return list_ ? list_->items : kEmptyItems; }
std::vector<Value>* Value::mutable_items() { return list_ ? &list_->items : nullptr; }
void Value::Append(Value v) {
  if (list_) list_->items.push_back(std::move(v));
}
const Value* Value::Find(std::string_view key) const {
  if (!dict_) return nullptr;
  auto it = dict_->index.find(std::string(key));
  return it == dict_->index.end() ? nullptr : &dict_->entries[it->second].second;
}
void Value::Set(std::string key, Value v) {
  if (!dict_) return;
  auto it = dict_->index.find(key);
  if (it != dict_->index.end()) {
    dict_->entries[it->second].second = std::move(v);
    return;
  }
  dict_->index.emplace(key, dict_->entries.size());
  dict_->entries.emplace_back(std::move(key), std::move(v));
}
const std::vector<std::pair<std::string, Value>>& Value::entries() const {
  return dict_ ? dict_->entries : kEmptyEntries;
}
bool Value::dict_keys_are_input() const { return dict_ && dict_->keys_are_input; }
bool Value::is_namespace() const { return dict_ && dict_->is_namespace; }
void Value::MarkNamespace() {
  if (dict_) dict_->is_namespace = true;
}
const void* Value::container_id() const {
  if (list_) return list_.get();
  if (dict_) return dict_.get();
  return nullptr;
}

// Lists and dicts are torn down iteratively so that a deeply nested value built by a template
// cannot overflow the stack in recursive destructors.
void Value::MoveOutChildrenIfUnique(Value& v, std::vector<Value>& out) {
  if (v.list_ && v.list_.use_count() == 1) {
    for (Value& c : v.list_->items) out.push_back(std::move(c));
    v.list_->items.clear();
  } else if (v.dict_ && v.dict_.use_count() == 1) {
    for (auto& e : v.dict_->entries) out.push_back(std::move(e.second));
    v.dict_->entries.clear();
    v.dict_->index.clear();
  }
}

namespace {
void TearDown(std::vector<Value>& values) {
  if (values.empty()) return;
  std::vector<Value> stack = std::move(values);
  values.clear();
  while (!stack.empty()) {
    Value v = std::move(stack.back());
    stack.pop_back();
    Value::MoveOutChildrenIfUnique(v, stack);
  }
}
}  // namespace

ListData::~ListData() { TearDown(items); }
DictData::~DictData() {
  std::vector<Value> values;
  for (auto& e : entries) values.push_back(std::move(e.second));
  TearDown(values);
}

bool Truthy(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return false;
    case Value::Kind::kBool:
      return v.bool_value();
    case Value::Kind::kInt:
      return v.int_value() != 0;
    case Value::Kind::kFloat:
      return v.float_value() != 0.0;
    case Value::Kind::kString:
      return !v.str().empty();
    case Value::Kind::kList:
      return !v.items().empty();
    case Value::Kind::kDict:
      return !v.entries().empty();
    case Value::Kind::kCallable:
      return true;
  }
  return false;
}

namespace {

bool EqualsDepth(const Value& a, const Value& b, int depth) {
  if (depth > kMaxDepth) return false;
  auto numeric = [](const Value& v) { return v.is_number() || v.is_bool(); };
  if (numeric(a) && numeric(b)) {
    if (a.is_float() || b.is_float()) {
      double x = a.is_bool() ? double(a.bool_value()) : a.float_value();
      double y = b.is_bool() ? double(b.bool_value()) : b.float_value();
      return x == y;
    }
    std::int64_t x = a.is_bool() ? a.bool_value() : a.int_value();
    std::int64_t y = b.is_bool() ? b.bool_value() : b.int_value();
    return x == y;
  }
  if (a.kind() != b.kind()) return false;
  switch (a.kind()) {
    case Value::Kind::kUndefined:
    case Value::Kind::kNone:
      return true;
    case Value::Kind::kString:
      return a.str() == b.str();
    case Value::Kind::kList: {
      if (a.items().size() != b.items().size()) return false;
      for (std::size_t i = 0; i < a.items().size(); ++i)
        if (!EqualsDepth(a.items()[i], b.items()[i], depth + 1)) return false;
      return true;
    }
    case Value::Kind::kDict: {
      if (a.entries().size() != b.entries().size()) return false;
      for (const auto& [k, v] : a.entries()) {
        const Value* o = b.Find(k);
        if (!o || !EqualsDepth(v, *o, depth + 1)) return false;
      }
      return true;
    }
    case Value::Kind::kCallable:
      return a.callable() == b.callable();
    default:
      return false;
  }
}

void ReprInto(const Value& v, std::string& out, int depth, bool top_str);

void ReprString(std::string_view s, std::string& out) {
  char q = (s.find('\'') != std::string_view::npos && s.find('"') == std::string_view::npos) ? '"'
                                                                                             : '\'';
  out.push_back(q);
  for (unsigned char c : s) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c == static_cast<unsigned char>(q)) {
          out.push_back('\\');
          out.push_back(char(c));
        } else if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\x%02x", c);
          out += buf;
        } else {
          out.push_back(char(c));
        }
    }
  }
  out.push_back(q);
}

void ReprInto(const Value& v, std::string& out, int depth, bool top_str) {
  if (depth > kMaxDepth) {
    out += "[...]";
    return;
  }
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      break;
    case Value::Kind::kNone:
      out += "None";
      break;
    case Value::Kind::kBool:
      out += v.bool_value() ? "True" : "False";
      break;
    case Value::Kind::kInt:
      out += std::to_string(v.int_value());
      break;
    case Value::Kind::kFloat:
      out += internal::FormatPythonFloat(v.float_value());
      break;
    case Value::Kind::kString:
      if (top_str)
        out += v.str();
      else
        ReprString(v.str(), out);
      break;
    case Value::Kind::kList: {
      out.push_back('[');
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += ", ";
        first = false;
        ReprInto(item, out, depth + 1, false);
      }
      out.push_back(']');
      break;
    }
    case Value::Kind::kDict: {
      out.push_back('{');
      bool first = true;
      for (const auto& [k, item] : v.entries()) {
        if (!first) out += ", ";
        first = false;
        ReprString(k, out);
        out += ": ";
        ReprInto(item, out, depth + 1, false);
      }
      out.push_back('}');
      break;
    }
    case Value::Kind::kCallable:
      out += "<built-in function>";
      break;
  }
}

void JsonString(std::string_view s, std::string& out, bool ensure_ascii) {
  out.push_back('"');
  for (std::size_t i = 0; i < s.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else if (c >= 0x80 && ensure_ascii) {
          // Decode one UTF-8 sequence (invalid bytes become U+FFFD) and escape it.
          std::uint32_t cp = 0xFFFD;
          std::size_t n = (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
          bool ok = n > 1 && i + n <= s.size();
          for (std::size_t k = 1; ok && k < n; ++k)
            ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
          if (ok) {
            cp = c & (0x7F >> n);
            for (std::size_t k = 1; k < n; ++k)
              cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
            i += n - 1;
          }
          char buf[16];
          if (cp >= 0x10000) {
            cp -= 0x10000;
            std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xD800 + (cp >> 10),
                          0xDC00 + (cp & 0x3FF));
          } else {
            std::snprintf(buf, sizeof buf, "\\u%04x", cp);
          }
          out += buf;
        } else {
          out.push_back(char(c));
        }
    }
  }
  out.push_back('"');
}

Status JsonInto(const Value& v, std::string& out, const JsonOptions& o, int depth) {
  const int indent = o.indent;
  const std::size_t max_bytes = o.max_bytes;
  const std::string& item_sep = !o.item_separator.empty() ? o.item_separator
                                : indent < 0              ? kCommaSpace
                                                          : kComma;
  if (depth > kMaxDepth) return LimitExceeded("template: tojson: value nested deeper than 128");
  if (out.size() > max_bytes) return LimitExceeded("template: tojson: output too large");
  auto newline = [&](int level) {
    if (indent < 0) return;
    out.push_back('\n');
    out.append(std::size_t(indent) * std::size_t(level), ' ');
  };
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return InvalidArgument("template: tojson: value is undefined");
    case Value::Kind::kCallable:
      return InvalidArgument("template: tojson: a function is not JSON serializable");
    case Value::Kind::kNone:
      out += "null";
      break;
    case Value::Kind::kBool:
      out += v.bool_value() ? "true" : "false";
      break;
    case Value::Kind::kInt:
      out += std::to_string(v.int_value());
      break;
    case Value::Kind::kFloat: {
      double f = v.float_value();
      if (std::isnan(f))
        out += "NaN";
      else if (std::isinf(f))
        out += f > 0 ? "Infinity" : "-Infinity";
      else
        out += internal::FormatPythonFloat(f);
      break;
    }
    case Value::Kind::kString:
      JsonString(v.str(), out, o.ensure_ascii);
      break;
    case Value::Kind::kList: {
      if (v.items().empty()) {
        out += "[]";
        break;
      }
      out.push_back('[');
      bool first = true;
      for (const Value& item : v.items()) {
        if (!first) out += item_sep;
        first = false;
        newline(depth + 1);
        AIRLOCK_TRY(JsonInto(item, out, o, depth + 1));
      }
      newline(depth);
      out.push_back(']');
      break;
    }
    case Value::Kind::kDict: {
      if (v.entries().empty()) {
        out += "{}";
        break;
      }
      std::vector<const std::pair<std::string, Value>*> order;
      for (const auto& e : v.entries()) order.push_back(&e);
      if (o.sort_keys)
        std::sort(order.begin(), order.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out.push_back('{');
      bool first = true;
      for (const auto* e : order) {
        if (!first) out += item_sep;
        first = false;
        newline(depth + 1);
        JsonString(e->first, out, o.ensure_ascii);
        out += o.key_separator;
        AIRLOCK_TRY(JsonInto(e->second, out, o, depth + 1));
      }
      newline(depth);
      out.push_back('}');
      break;
    }
  }
  return Status::Ok();
}

// Builds Values from nlohmann's SAX events without recursion, with a depth cap.
class SaxBuilder {
 public:
  explicit SaxBuilder(bool mark) : mark_(mark) {}
  using json = nlohmann::json;
  bool null() { return Put(Value::None()); }
  bool boolean(bool b) { return Put(Value::Bool(b)); }
  bool number_integer(json::number_integer_t i) { return Put(Value::Int(i)); }
  bool number_unsigned(json::number_unsigned_t u) {
    if (u > std::uint64_t(INT64_MAX)) return Put(Value::Float(double(u)));
    return Put(Value::Int(std::int64_t(u)));
  }
  bool number_float(json::number_float_t f, const std::string&) { return Put(Value::Float(f)); }
  bool string(json::string_t& s) { return Put(Value::String(std::move(s), mark_)); }
  bool binary(json::binary_t&) { return false; }
  bool start_object(std::size_t) { return Open(Value::Dict(mark_)); }
  bool key(json::string_t& k) {
    key_ = std::move(k);
    return true;
  }
  bool end_object() { return Close(); }
  bool start_array(std::size_t) { return Open(Value::List()); }
  bool end_array() { return Close(); }
  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception&) {
    error_ = "template: json: malformed at byte " + std::to_string(pos);
    return false;
  }

  std::string error_;
  bool too_deep_ = false;
  Value root_;
  bool have_root_ = false;

 private:
  bool Put(Value v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      have_root_ = true;
      return true;
    }
    Value& top = stack_.back().first;
    if (top.is_list())
      top.Append(std::move(v));
    else
      top.Set(std::move(key_), std::move(v));
    return true;
  }
  bool Open(Value v) {
    if (stack_.size() >= kMaxDepth) {
      too_deep_ = true;
      return false;
    }
    stack_.emplace_back(std::move(v), std::move(key_));
    return true;
  }
  bool Close() {
    auto [v, key] = std::move(stack_.back());
    stack_.pop_back();
    key_ = std::move(key);
    return Put(std::move(v));
  }
  bool mark_;
  std::string key_;
  std::vector<std::pair<Value, std::string>> stack_;
};

}  // namespace

bool Equals(const Value& a, const Value& b) { return EqualsDepth(a, b, 0); }

std::string ToPythonString(const Value& v) {
  std::string out;
  ReprInto(v, out, 0, true);
  return out;
}
std::string ToPythonRepr(const Value& v) {
  std::string out;
  ReprInto(v, out, 0, false);
  return out;
}

Result<std::string> ToJson(const Value& v, const JsonOptions& options) {
  std::string out;
  AIRLOCK_TRY(JsonInto(v, out, options, 0));
  if (out.size() > options.max_bytes) return LimitExceeded("template: tojson: output too large");
  return out;
}

Result<Value> ValueFromJson(std::string_view json, bool mark_as_input) {
  SaxBuilder sax(mark_as_input);
  bool ok = false;
  try {
    ok = nlohmann::json::sax_parse(json.begin(), json.end(), &sax);
  } catch (const std::exception&) {
    ok = false;
  }
  if (sax.too_deep_) return LimitExceeded("template: json: nested deeper than 128");
  if (!ok || !sax.have_root_)
    return InvalidArgument(sax.error_.empty() ? "template: json: malformed" : sax.error_);
  return std::move(sax.root_);
}

}  // namespace airlock::tmpl
