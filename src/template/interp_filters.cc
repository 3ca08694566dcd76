// Jinja filters: ApplyFilter finds the filter by name; each filter is one function.
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <ctime>
#include <functional>
#include <optional>
#include <unordered_set>

#include "core/text.h"
#include "template/internal/ast.h"
#include "template/internal/interpreter.h"
#include "template/internal/prompt_text.h"
#include "template/internal/strings.h"
#include "template/template.h"

namespace airlock::tmpl::internal {

Value Interp::AttrPath(const Value& item, const std::string& path, std::size_t offset) {
  Value cur = item;
  std::size_t i = 0;
  while (true) {
    std::size_t dot = path.find('.', i);
    std::string part = path.substr(i, dot == std::string::npos ? std::string::npos : dot - i);
    CheckName(part, offset);
    bool numeric = !part.empty() && std::all_of(part.begin(), part.end(),
                                                [](char c) { return c >= '0' && c <= '9'; });
    if (numeric && part.size() < 10 && cur.is_list())
      cur = GetItem(cur, Value::Int(std::stoll(part)), offset);
    else if (cur.is_dict()) {
      const Value* v = cur.Find(part);
      cur = v ? *v : Value::Undefined(part);
    } else {
      cur = Value::Undefined(part);
    }
    if (dot == std::string::npos) return cur;
    i = dot + 1;
  }
}

// Sort key comparison: numbers with numbers, strings with strings (optionally case-folded).
int Interp::CompareForSort(const Value& x, const Value& y, bool case_sensitive,
                           std::size_t offset) {
  if (Numeric(x) && Numeric(y)) {
    Value a = AsNum(x), b = AsNum(y);
    double p = a.float_value(), q = b.float_value();
    if (a.is_int() && b.is_int())
      return a.int_value() < b.int_value() ? -1 : a.int_value() > b.int_value();
    return p < q ? -1 : p > q ? 1 : 0;
  }
  if (x.is_string() && y.is_string()) {
    if (case_sensitive) return x.str().compare(y.str());
    return MapCase(x.string_data(), 1).text.compare(MapCase(y.string_data(), 1).text);
  }
  Error(offset,
        std::string("cannot compare ") + KindName(x) + " with " + KindName(y) + " for sorting");
}

// Jinja's filters, one member function each, found by name; `attr` is refused (it reaches
// attributes the sandbox hides) and `batch`/`slice` are not implemented.
Value Interp::ApplyFilter(const std::string& name, const Value& v, CallArgs& a) {
  using Filter = Value (Interp::*)(const std::string&, const Value&, CallArgs&);
  static const std::unordered_map<std::string_view, Filter> kFilters = {
      {"safe", &Interp::FilterSafe},
      {"string", &Interp::FilterString},
      {"trim", &Interp::FilterTrim},
      {"strip", &Interp::FilterTrim},
      {"length", &Interp::FilterLength},
      {"count", &Interp::FilterLength},
      {"upper", &Interp::FilterUpper},
      {"lower", &Interp::FilterUpper},
      {"title", &Interp::FilterUpper},
      {"capitalize", &Interp::FilterUpper},
      {"replace", &Interp::FilterReplace},
      {"join", &Interp::FilterJoin},
      {"default", &Interp::FilterDefault},
      {"d", &Interp::FilterDefault},
      {"first", &Interp::FilterFirst},
      {"last", &Interp::FilterFirst},
      {"list", &Interp::FilterList},
      {"tojson", &Interp::FilterTojson},
      {"int", &Interp::FilterInt},
      {"float", &Interp::FilterFloat},
      {"abs", &Interp::FilterAbs},
      {"round", &Interp::FilterRound},
      {"items", &Interp::FilterItems},
      {"dictsort", &Interp::FilterDictsort},
      {"map", &Interp::FilterMap},
      {"select", &Interp::FilterSelect},
      {"reject", &Interp::FilterSelect},
      {"selectattr", &Interp::FilterSelect},
      {"rejectattr", &Interp::FilterSelect},
      {"unique", &Interp::FilterUnique},
      {"reverse", &Interp::FilterReverse},
      {"sort", &Interp::FilterSort},
      {"escape", &Interp::FilterEscape},
      {"e", &Interp::FilterEscape},
      {"forceescape", &Interp::FilterEscape},
      {"indent", &Interp::FilterIndent},
      {"wordcount", &Interp::FilterWordcount},
      {"sum", &Interp::FilterSum},
      {"min", &Interp::FilterMin},
      {"max", &Interp::FilterMin},
      {"center", &Interp::FilterCenter},
      {"truncate", &Interp::FilterTruncate},
      {"batch", &Interp::FilterBatch},
      {"slice", &Interp::FilterBatch},
      {"format", &Interp::FilterFormat},
      {"attr", &Interp::FilterAttr},
  };
  if (auto it = kFilters.find(name); it != kFilters.end()) return (this->*it->second)(name, v, a);
  std::size_t off = a.offset;
  Error(off, "unknown filter '" + name + "'");
}

Value Interp::FilterSafe(const std::string& name, const Value& v, CallArgs& a) { return v; }

Value Interp::FilterString(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (v.is_string()) return v;
  return Str(ToStr(v), off);
}

Value Interp::FilterTrim(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  const Value* c = Arg(a, 0, "chars");
  std::string chars = c && c->is_string() ? c->str() : "";
  return Str(Strip(ToStr(v), c && c->is_string() ? &chars : nullptr, true, true), off);
}

Value Interp::FilterLength(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (v.is_string()) return Value::Int(std::int64_t(internal::CodePointCount(v.str())));
  if (v.is_list()) return Value::Int(std::int64_t(v.items().size()));
  if (v.is_dict()) return Value::Int(std::int64_t(v.entries().size()));
  if (v.is_undefined()) return Value::Int(0);
  Error(off, std::string("object of type '") + KindName(v) + "' has no len()");
}

Value Interp::FilterUpper(const std::string& name, const Value& v, CallArgs& a) {
  int mode = name == "upper" ? 0 : name == "lower" ? 1 : name == "title" ? 2 : 3;
  return Value::String(MapCase(ToStr(v), mode));
}

Value Interp::FilterReplace(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  std::string old = StrArg(a, 0, "old", name);
  const Value* w = Arg(a, 1, "new");
  if (!w) Error(off, "replace() needs two arguments");
  Value with = w->is_string() ? *w : Value::String(ToStr(*w));
  return Replace(Value::String(ToStr(v)), old, with, IntArg(a, 2, "count", -1), off);
}

Value Interp::FilterJoin(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  const Value* sep_v = Arg(a, 0, "d");
  StringData sep = sep_v ? ToStr(*sep_v) : StringData{};
  const Value* attr = Arg(a, 1, "attribute");
  StrBuilder b;
  bool first = true;
  for (const Value& item : AsSeq(v, name, off)) {
    if (!first) b.Append(sep);
    first = false;
    b.Append(ToStr(attr ? AttrPath(item, ToPythonString(*attr), off) : item));
    ChargeBytes(b.size(), off);
  }
  return Str(b.Take(), off);
}

Value Interp::FilterDefault(const std::string& name, const Value& v, CallArgs& a) {
  const Value* def = Arg(a, 0, "default_value");
  bool boolean = BoolArg(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !Truthy(v))) return def ? *def : Value::String("");
  return v;
}

Value Interp::FilterFirst(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  std::vector<Value> seq = AsSeq(v, name, off);
  if (seq.empty()) return Value::Undefined(name);
  return name == "first" ? seq.front() : seq.back();
}

Value Interp::FilterList(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  return ListOf(AsSeq(v, name, off), off);
}

Value Interp::FilterTojson(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  const Value* ind = Arg(a, 0, "indent");
  int indent = -1;
  if (ind && !ind->is_none()) {
    std::int64_t i = AsIndex(*ind, off);
    indent = int(std::clamp<std::int64_t>(i, 0, 64));
  }
  JsonOptions jo;
  jo.indent = indent;
  jo.sort_keys = BoolArg(a, 99, "sort_keys", false);
  jo.ensure_ascii = BoolArg(a, 99, "ensure_ascii", false);
  jo.max_bytes = limits_.max_string_bytes;
  if (const Value* sep = Arg(a, 99, "separators"); sep && !sep->is_none()) {
    if (!sep->is_list() || sep->items().size() != 2 || !sep->items()[0].is_string() ||
        !sep->items()[1].is_string())
      Error(off, "tojson separators must be a pair of strings");
    jo.item_separator = sep->items()[0].str();
    jo.key_separator = sep->items()[1].str();
    if (jo.item_separator.size() + jo.key_separator.size() > 64)
      Error(off, "tojson separators too long");
    if (jo.item_separator.empty()) jo.item_separator = ",";
  }
  auto json = ToJson(v, jo);
  if (!json)
    Throw(Status(json.error().code(),
                 json.error().message() + " (at byte " + std::to_string(off) + ")"));
  Tick(json->size() / 16);
  return Value::String(std::move(*json), ContainsInput(v));
}

Value Interp::FilterInt(const std::string& name, const Value& v, CallArgs& a) {
  std::int64_t def = IntArg(a, 0, "default", 0);
  if (v.is_int()) return v;
  if (v.is_bool()) return Value::Int(v.bool_value());
  if (v.is_float()) {
    double f = v.float_value();
    if (!std::isfinite(f) || std::fabs(f) >= 9.2e18) return Value::Int(def);
    return Value::Int(std::int64_t(f));
  }
  if (v.is_string()) {
    std::string t = Strip(v.string_data(), nullptr, true, true).text;
    char* end = nullptr;
    errno = 0;
    long long x = std::strtoll(t.c_str(), &end, 10);
    if (!t.empty() && end && *end == 0 && errno == 0) return Value::Int(x);
    double f = std::strtod(t.c_str(), &end);
    if (!t.empty() && end && *end == 0 && std::isfinite(f) && std::fabs(f) < 9.2e18)
      return Value::Int(std::int64_t(f));
  }
  return Value::Int(def);
}

Value Interp::FilterFloat(const std::string& name, const Value& v, CallArgs& a) {
  const Value* d = Arg(a, 0, "default");
  Value def = d ? *d : Value::Float(0.0);
  if (v.is_float()) return v;
  if (v.is_int() || v.is_bool()) return Value::Float(AsNum(v).float_value());
  if (v.is_string()) {
    std::string t = Strip(v.string_data(), nullptr, true, true).text;
    char* end = nullptr;
    double f = std::strtod(t.c_str(), &end);
    if (!t.empty() && end && *end == 0) return Value::Float(f);
  }
  return def;
}

Value Interp::FilterAbs(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (v.is_int()) {
    if (v.int_value() == INT64_MIN) Error(off, "integer overflow");
    return Value::Int(std::llabs(v.int_value()));
  }
  if (v.is_float()) return Value::Float(std::fabs(v.float_value()));
  if (v.is_bool()) return Value::Int(v.bool_value());
  Error(off, "abs() needs a number");
}

Value Interp::FilterRound(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (!Numeric(v)) Error(off, "round needs a number");
  std::int64_t prec = std::clamp<std::int64_t>(IntArg(a, 0, "precision", 0), -20, 20);
  std::string method = StrArg(a, 1, "method", name, "common");
  double x = AsNum(v).float_value(), p = std::pow(10.0, double(prec)), r;
  if (method == "common")
    r = std::round(x * p) / p;
  else if (method == "floor")
    r = std::floor(x * p) / p;
  else if (method == "ceil")
    r = std::ceil(x * p) / p;
  else
    Error(off, "round method must be common, ceil or floor");
  return Value::Float(r);
}

Value Interp::FilterItems(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (v.is_undefined()) return Value::List();
  if (!v.is_dict()) Error(off, "items needs a mapping");
  return DictItems(v, off);
}

Value Interp::FilterDictsort(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (!v.is_dict()) Error(off, "dictsort needs a mapping");
  bool cs = BoolArg(a, 0, "case_sensitive", false);
  std::string by = StrArg(a, 1, "by", name, "key");
  bool rev = BoolArg(a, 2, "reverse", false);
  std::vector<Value> items = DictItems(v, off).items();
  std::size_t k = by == "value" ? 1 : 0;
  for (std::size_t i = 1; i < items.size(); ++i)
    CompareForSort(items[0].items()[k], items[i].items()[k], cs, off);
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    int c = CompareForSort(x.items()[k], y.items()[k], cs, off);
    return rev ? c > 0 : c < 0;
  });
  return ListOf(std::move(items), off);
}

Value Interp::FilterMap(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  std::vector<Value> seq = AsSeq(v, name, off);
  std::vector<Value> out;
  const Value* attr = Arg(a, 99, "attribute");
  if (attr) {
    const Value* def = Arg(a, 99, "default");
    std::string path = ToPythonString(*attr);
    for (const Value& item : seq) {
      Tick();
      Value r = AttrPath(item, path, off);
      out.push_back(r.is_undefined() && def ? *def : r);
    }
    return ListOf(std::move(out), off);
  }
  if (a.args.empty() || !a.args[0].is_string())
    Error(off, "map() needs a filter name or attribute=");
  std::string filter = a.args[0].str();
  CallArgs rest;
  rest.offset = off;
  rest.args.assign(a.args.begin() + 1, a.args.end());
  for (auto& kw : a.kwargs) rest.kwargs.push_back(kw);
  for (const Value& item : seq) {
    Tick();
    CallArgs copy = rest;
    out.push_back(ApplyFilter(filter, item, copy));
  }
  return ListOf(std::move(out), off);
}

Value Interp::FilterSelect(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  bool by_attr = name == "selectattr" || name == "rejectattr";
  bool keep_if = name == "select" || name == "selectattr";
  std::vector<Value> seq = AsSeq(v, name, off);
  std::size_t first = 0;
  std::string attr;
  if (by_attr) {
    if (a.args.empty() || !a.args[0].is_string()) Error(off, name + "() needs an attribute name");
    attr = a.args[0].str();
    first = 1;
  }
  std::string test;
  if (a.args.size() > first) {
    if (!a.args[first].is_string()) Error(off, name + "() test name must be a string");
    test = a.args[first].str();
  }
  CallArgs targs;
  targs.offset = off;
  if (a.args.size() > first + 1) targs.args.assign(a.args.begin() + long(first) + 1, a.args.end());
  std::vector<Value> out;
  for (const Value& item : seq) {
    Tick();
    Value subject = by_attr ? AttrPath(item, attr, off) : item;
    CallArgs copy = targs;
    bool r = test.empty() ? Truthy(subject) : ApplyTest(test, subject, copy);
    if (r == keep_if) out.push_back(item);
  }
  return ListOf(std::move(out), off);
}

Value Interp::FilterUnique(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  bool cs = BoolArg(a, 0, "case_sensitive", false);
  const Value* attr = Arg(a, 1, "attribute");
  std::vector<Value> out, keys;
  for (const Value& item : AsSeq(v, name, off)) {
    Value key = attr ? AttrPath(item, ToPythonString(*attr), off) : item;
    if (!cs && key.is_string()) key = Value::String(MapCase(key.string_data(), 1));
    bool seen = false;
    for (const Value& k : keys) {
      Tick();
      if (Equals(k, key)) {
        seen = true;
        break;
      }
    }
    if (!seen) {
      keys.push_back(key);
      out.push_back(item);
    }
  }
  return ListOf(std::move(out), off);
}

Value Interp::FilterReverse(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (v.is_string()) {
    auto offs = internal::CodePointOffsets(v.str());
    StrBuilder b;
    for (std::size_t i = offs.size() - 1; i > 0; --i)
      b.Append(v.string_data(), offs[i - 1], offs[i]);
    return Str(b.Take(), off);
  }
  std::vector<Value> seq = AsSeq(v, name, off);
  std::reverse(seq.begin(), seq.end());
  return ListOf(std::move(seq), off);
}

Value Interp::FilterSort(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  bool rev = BoolArg(a, 0, "reverse", false);
  bool cs = BoolArg(a, 1, "case_sensitive", false);
  const Value* attr = Arg(a, 2, "attribute");
  std::vector<Value> seq = AsSeq(v, name, off);
  std::vector<Value> keys;
  for (const Value& item : seq)
    keys.push_back(attr ? AttrPath(item, ToPythonString(*attr), off) : item);
  for (std::size_t i = 1; i < keys.size(); ++i) CompareForSort(keys[0], keys[i], cs, off);
  std::vector<std::size_t> order(seq.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  Tick(seq.size() * 8);
  std::stable_sort(order.begin(), order.end(), [&](std::size_t x, std::size_t y) {
    int c = CompareForSort(keys[x], keys[y], cs, off);
    return rev ? c > 0 : c < 0;
  });
  std::vector<Value> out;
  for (std::size_t i : order) out.push_back(seq[i]);
  return ListOf(std::move(out), off);
}

Value Interp::FilterEscape(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  StringData s = ToStr(v);
  std::string out = core::HtmlEscape(s.text);
  ChargeBytes(out.size(), off);
  return Value::String(std::move(out), !s.input.empty());
}

Value Interp::FilterIndent(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  const Value* w = Arg(a, 0, "width");
  StringData pad;
  if (!w)
    pad.text = "    ";
  else if (w->is_string())
    pad = w->string_data();
  else
    pad.text = std::string(std::size_t(std::clamp<std::int64_t>(AsIndex(*w, off), 0, 256)), ' ');
  bool first = BoolArg(a, 1, "first", false);
  bool blank = BoolArg(a, 2, "blank", false);
  StringData s = ToStr(v);
  StrBuilder b;
  std::size_t i = 0;
  bool is_first = true;
  while (i <= s.text.size()) {
    std::size_t nl = s.text.find('\n', i);
    std::size_t e = nl == std::string::npos ? s.text.size() : nl;
    bool empty_line = e == i;
    if ((!is_first || first) && (blank || !empty_line)) b.Append(pad);
    b.Append(s, i, nl == std::string::npos ? e : e + 1);
    ChargeBytes(b.size(), off);
    is_first = false;
    if (nl == std::string::npos) break;
    i = nl + 1;
  }
  return Str(b.Take(), off);
}

Value Interp::FilterWordcount(const std::string& name, const Value& v, CallArgs& a) {
  std::int64_t n = 0;
  bool in_word = false;
  for (unsigned char c : ToStr(v).text) {
    bool w = std::isalnum(c) || c == '_' || c >= 0x80;
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value::Int(n);
}

Value Interp::FilterSum(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  const Value* attr = Arg(a, 0, "attribute");
  Value acc = Arg(a, 1, "start") ? *Arg(a, 1, "start") : Value::Int(0);
  for (const Value& item : AsSeq(v, name, off)) {
    Tick();
    acc = Binary("+", acc, attr ? AttrPath(item, ToPythonString(*attr), off) : item, off);
  }
  return acc;
}

Value Interp::FilterMin(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  bool cs = BoolArg(a, 0, "case_sensitive", false);
  const Value* attr = Arg(a, 1, "attribute");
  std::vector<Value> seq = AsSeq(v, name, off);
  if (seq.empty()) return Value::Undefined(name);
  std::size_t best = 0;
  for (std::size_t i = 1; i < seq.size(); ++i) {
    Value x = attr ? AttrPath(seq[i], ToPythonString(*attr), off) : seq[i];
    Value y = attr ? AttrPath(seq[best], ToPythonString(*attr), off) : seq[best];
    int c = CompareForSort(x, y, cs, off);
    if (name == "min" ? c < 0 : c > 0) best = i;
  }
  return seq[best];
}

Value Interp::FilterCenter(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  std::int64_t width = std::clamp<std::int64_t>(IntArg(a, 0, "width", 80), 0, 4096);
  StringData s = ToStr(v);
  std::int64_t len = std::int64_t(internal::CodePointCount(s.text));
  if (len >= width) return Value::String(s);
  std::int64_t total = width - len, left = total / 2 + (total & width & 1);
  StrBuilder b;
  b.AppendText(std::string(std::size_t(left), ' '));
  b.Append(s);
  b.AppendText(std::string(std::size_t(total - left), ' '));
  return Str(b.Take(), off);
}

Value Interp::FilterTruncate(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  std::int64_t length = std::max<std::int64_t>(0, IntArg(a, 0, "length", 255));
  StringData s = ToStr(v);
  auto offs = internal::CodePointOffsets(s.text);
  if (std::int64_t(offs.size()) - 1 <= length) return Value::String(s);
  std::string end = StrArg(a, 2, "end", name, "...");
  std::int64_t keep = std::max<std::int64_t>(0, length - std::int64_t(end.size()));
  StrBuilder b;
  b.Append(s, 0, offs[std::size_t(keep)]);
  b.AppendText(end);
  return Str(b.Take(), off);
}

Value Interp::FilterBatch(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  Error(off, "filter '" + name + "' is not supported");
}

Value Interp::FilterFormat(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  if (!a.kwargs.empty()) {
    Value d = Value::Dict();
    for (auto& [k, x] : a.kwargs) d.Set(k, x);
    return PercentFormat(Value::String(ToStr(v)), d, off);
  }
  return PercentFormat(Value::String(ToStr(v)), Value::List(a.args), off);
}

Value Interp::FilterAttr(const std::string& name, const Value& v, CallArgs& a) {
  std::size_t off = a.offset;
  Refuse(off, "filter '" + name + "' is not available in the sandbox");
}

}  // namespace airlock::tmpl::internal
