// Methods of str, list and dict values, and the string operations they share with filters (input
// marks are kept through every operation).
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

Value Interp::Split(const Value& v, const Value* sep_v, std::int64_t maxsplit, bool from_right,
                    std::size_t offset) {
  const StringData& s = v.string_data();
  const std::string& t = s.text;
  std::vector<std::pair<std::size_t, std::size_t>> parts;
  if (!sep_v || sep_v->is_none()) {
    // Whitespace split: runs of whitespace separate, no empty parts.
    if (!from_right) {
      std::size_t i = 0;
      std::int64_t splits = 0;
      while (true) {
        while (i < t.size() && IsWs(t[i])) ++i;
        if (i >= t.size()) break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          std::size_t e = t.size();
          while (e > i && IsWs(t[e - 1])) --e;
          parts.emplace_back(i, e);
          break;
        }
        std::size_t j = i;
        while (j < t.size() && !IsWs(t[j])) ++j;
        parts.emplace_back(i, j);
        ++splits;
        i = j;
      }
    } else {
      std::size_t i = t.size();
      std::int64_t splits = 0;
      while (true) {
        while (i > 0 && IsWs(t[i - 1])) --i;
        if (i == 0) break;
        if (maxsplit >= 0 && splits >= maxsplit) {
          std::size_t b = 0;
          while (b < i && IsWs(t[b])) ++b;
          parts.emplace_back(b, i);
          break;
        }
        std::size_t j = i;
        while (j > 0 && !IsWs(t[j - 1])) --j;
        parts.emplace_back(j, i);
        ++splits;
        i = j;
      }
      std::reverse(parts.begin(), parts.end());
    }
  } else {
    if (!sep_v->is_string()) Error(offset, "split() separator must be a string");
    const std::string& sep = sep_v->str();
    if (sep.empty()) Error(offset, "empty separator");
    if (!from_right) {
      std::size_t i = 0;
      std::int64_t splits = 0;
      while (true) {
        std::size_t f = (maxsplit >= 0 && splits >= maxsplit) ? std::string::npos : t.find(sep, i);
        if (f == std::string::npos) {
          parts.emplace_back(i, t.size());
          break;
        }
        parts.emplace_back(i, f);
        ++splits;
        i = f + sep.size();
        Tick();
      }
    } else {
      std::size_t end = t.size();
      std::int64_t splits = 0;
      while (true) {
        std::size_t f = (maxsplit >= 0 && splits >= maxsplit) || end < sep.size()
                            ? std::string::npos
                            : t.rfind(sep, end - sep.size());
        if (f == std::string::npos) {
          parts.emplace_back(0, end);
          break;
        }
        parts.emplace_back(f + sep.size(), end);
        ++splits;
        end = f;
        Tick();
      }
      std::reverse(parts.begin(), parts.end());
    }
  }
  ChargeBytes(parts.size() * 16, offset);
  std::vector<Value> out;
  for (auto [b, e] : parts) out.push_back(Value::String(internal::Substr(s, b, e)));
  ChargeBytes(t.size(), offset);
  return ListOf(std::move(out), offset);
}

Value Interp::Replace(const Value& v, const std::string& old, const Value& with, std::int64_t count,
                      std::size_t offset) {
  const StringData& s = v.string_data();
  StrBuilder b;
  std::size_t i = 0;
  std::int64_t n = 0;
  if (old.empty()) {
    // Python inserts `with` between every character (and at both ends).
    auto offs = internal::CodePointOffsets(s.text);
    for (std::size_t k = 0; k + 1 < offs.size(); ++k) {
      if (count < 0 || n < count) {
        b.Append(with.string_data());
        ++n;
      }
      b.Append(s, offs[k], offs[k + 1]);
      ChargeBytes(b.size(), offset);
    }
    if (count < 0 || n < count) b.Append(with.string_data());
    return Str(b.Take(), offset);
  }
  while (count < 0 || n < count) {
    std::size_t f = s.text.find(old, i);
    if (f == std::string::npos) break;
    b.Append(s, i, f);
    b.Append(with.string_data());
    i = f + old.size();
    ++n;
    ChargeBytes(b.size(), offset);
  }
  b.Append(s, i, s.text.size());
  return Str(b.Take(), offset);
}

// ASCII case mapping (keeps byte lengths, so input marks stay valid). Title case follows
// Jinja's title filter: a word starts after whitespace or one of - ( { [ <.
// mode: 0 upper, 1 lower, 2 title, 3 capitalize.
StringData Interp::MapCase(const StringData& s, int mode) {
  StringData d = s;
  bool word_start = true;
  for (std::size_t i = 0; i < d.text.size(); ++i) {
    char& c = d.text[i];
    bool upper = c >= 'A' && c <= 'Z', lower = c >= 'a' && c <= 'z';
    bool make_upper = mode == 0 || (mode == 2 && word_start) || (mode == 3 && i == 0);
    if (make_upper && lower)
      c = char(c - 32);
    else if (!make_upper && mode != 0 && upper)
      c = char(c + 32);
    word_start = IsWs(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
  }
  return d;
}

bool Interp::StartsEnds(const Value& s, const Value& affix, bool starts, std::size_t offset) {
  if (affix.is_list()) {  // a tuple of strings (one level, like Python)
    for (const Value& x : affix.items()) {
      if (!x.is_string()) Error(offset, "startswith/endswith tuple must hold strings");
      if (StartsEnds(s, x, starts, offset)) return true;
    }
    return false;
  }
  if (!affix.is_string()) Error(offset, "startswith/endswith argument must be a string or tuple");
  const std::string& t = s.str();
  const std::string& a = affix.str();
  if (a.size() > t.size()) return false;
  return starts ? t.compare(0, a.size(), a) == 0 : t.compare(t.size() - a.size(), a.size(), a) == 0;
}

Value Interp::CallMethod(const Value& obj, const std::string& name, CallArgs& a) {
  std::size_t off = a.offset;
  if (obj.is_string()) {
    if (name == "strip" || name == "lstrip" || name == "rstrip") {
      const Value* c = Arg(a, 0, "chars");
      std::string chars = c && c->is_string() ? c->str() : "";
      bool have = c && c->is_string();
      return Str(
          Strip(obj.string_data(), have ? &chars : nullptr, name != "rstrip", name != "lstrip"),
          off);
    }
    if (name == "split" || name == "rsplit")
      return Split(obj, Arg(a, 0, "sep"), IntArg(a, 1, "maxsplit", -1), name == "rsplit", off);
    if (name == "startswith" || name == "endswith") {
      const Value* p = Arg(a, 0, "prefix");
      if (!p) Error(off, name + "() needs an argument");
      return Value::Bool(StartsEnds(obj, *p, name == "startswith", off));
    }
    if (name == "replace") {
      std::string old = StrArg(a, 0, "old", name);
      const Value* w = Arg(a, 1, "new");
      if (!w || !w->is_string()) Error(off, "replace() needs two strings");
      return Replace(obj, old, *w, IntArg(a, 2, "count", -1), off);
    }
    if (name == "upper") return Value::String(MapCase(obj.string_data(), 0));
    if (name == "lower") return Value::String(MapCase(obj.string_data(), 1));
    if (name == "title") return Value::String(MapCase(obj.string_data(), 2));
    if (name == "capitalize") return Value::String(MapCase(obj.string_data(), 3));
    if (name == "find" || name == "rfind" || name == "index" || name == "count") {
      std::string sub = StrArg(a, 0, "sub", name);
      const std::string& t = obj.str();
      if (name == "count") {
        if (sub.empty()) return Value::Int(std::int64_t(internal::CodePointCount(t)) + 1);
        std::int64_t n = 0;
        for (std::size_t i = t.find(sub); i != std::string::npos; i = t.find(sub, i + sub.size()))
          ++n;
        return Value::Int(n);
      }
      std::size_t f = name == "rfind" ? t.rfind(sub) : t.find(sub);
      if (f == std::string::npos) {
        if (name == "index") Error(off, "substring not found");
        return Value::Int(-1);
      }
      return Value::Int(std::int64_t(internal::CodePointCount(std::string_view(t).substr(0, f))));
    }
    if (name == "isdigit" || name == "isalpha" || name == "isspace" || name == "isalnum" ||
        name == "islower" || name == "isupper") {
      const std::string& t = obj.str();
      if (t.empty()) return Value::Bool(false);
      bool ok = true, cased = false;
      for (unsigned char c : t) {
        if (name == "isdigit")
          ok &= std::isdigit(c) != 0;
        else if (name == "isalpha")
          ok &= std::isalpha(c) != 0;
        else if (name == "isalnum")
          ok &= std::isalnum(c) != 0;
        else if (name == "isspace")
          ok &= std::isspace(c) != 0;
        else if (name == "islower") {
          ok &= !std::isupper(c);
          cased |= std::islower(c) != 0;
        } else {
          ok &= !std::islower(c);
          cased |= std::isupper(c) != 0;
        }
      }
      if (name == "islower" || name == "isupper") ok &= cased;
      return Value::Bool(ok);
    }
    if (name == "join") {
      const Value* items = Arg(a, 0, "iterable");
      if (!items) Error(off, "join() needs an argument");
      CallArgs fa;
      fa.offset = off;
      fa.args.push_back(obj);
      return ApplyFilter("join", *items, fa);
    }
    if (name == "format" || name == "format_map")
      Refuse(off, "str." + name + "() is not available in the sandbox");
    Error(off, "unknown string method '" + name + "'");
  }
  if (obj.is_list()) {
    if (name == "append") {
      if (a.args.size() != 1) Error(off, "append() takes exactly one argument");
      CheckNoCycle(a.args[0], obj, off);
      if (obj.items().size() >= limits_.max_string_bytes / 16)
        Throw(LimitExceeded("template: list too long"));
      Value target = obj;
      target.Append(a.args[0]);
      Tick();
      return Value::None();
    }
    if (name == "pop") {
      Value target = obj;
      auto* items = target.mutable_items();
      if (items->empty()) Error(off, "pop from empty list");
      std::int64_t i = IntArg(a, 0, "index", -1);
      std::int64_t n = std::int64_t(items->size());
      if (i < 0) i += n;
      if (i < 0 || i >= n) Error(off, "pop index out of range");
      Value v = (*items)[std::size_t(i)];
      items->erase(items->begin() + i);
      return v;
    }
    if (name == "index" || name == "count") {
      const Value* x = Arg(a, 0, "value");
      if (!x) Error(off, name + "() needs an argument");
      std::int64_t n = 0;
      for (std::size_t i = 0; i < obj.items().size(); ++i) {
        Tick();
        if (Equals(obj.items()[i], *x)) {
          if (name == "index") return Value::Int(std::int64_t(i));
          ++n;
        }
      }
      if (name == "index") Error(off, "value not in list");
      return Value::Int(n);
    }
    Error(off, "unknown list method '" + name + "'");
  }
  if (obj.is_dict()) {
    if (name == "get") {
      std::string k = StrArg(a, 0, "key", name);
      CheckName(k.substr(0, 2) == "__" ? k : std::string(), off);
      const Value* v = obj.Find(k);
      if (v) return *v;
      const Value* d = Arg(a, 1, "default");
      return d ? *d : Value::None();
    }
    if (name == "items") return DictItems(obj, off);
    if (name == "keys" || name == "values") {
      std::vector<Value> out;
      for (const auto& [k, v] : obj.entries())
        out.push_back(name == "keys" ? Value::String(k, obj.dict_keys_are_input()) : v);
      return ListOf(std::move(out), off);
    }
  }
  Error(off, std::string("'") + KindName(obj) + "' has no method '" + name + "'");
}

}  // namespace airlock::tmpl::internal
