// airlock::tmpl::Value: the only kind of data a sandboxed template can see. A value is undefined,
// none, bool, int (64-bit), float, string, list, dict or a built-in callable; there are no host
// objects, so a template can reach nothing but the values passed in and what it builds from them.
//
// Strings remember which of their bytes came from caller-marked input (InputSpan): chat message
// contents are marked, and every string operation of the interpreter keeps the marks, so the
// rendered prompt can be split into template text and message content (see chat.h).
// Ownership: lists and dicts are shared by reference (like Python); copying a Value is cheap.
// Thread-safety: a Value graph must not be mutated from two threads; reading is safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/status.h"

namespace airlock::tmpl {

// Bytes [begin, end) of a string that came from marked input.
struct InputSpan {
  std::size_t begin = 0;
  std::size_t end = 0;
  bool operator==(const InputSpan&) const = default;
};

struct StringData {
  std::string text;
  std::vector<InputSpan> input;  // sorted, non-overlapping, non-empty, merged when adjacent
};
struct ListData;
struct DictData;
struct CallableData;  // interpreter-internal (built-in functions, macros)

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kCallable };

  Value() = default;  // undefined
  static Value Undefined(std::string name = {});
  static Value None();
  static Value Bool(bool b);
  static Value Int(std::int64_t i);
  static Value Float(double f);
  // A string; `is_input` marks all of it as caller input (message content).
  static Value String(std::string text, bool is_input = false);
  static Value String(StringData data);
  static Value List(std::vector<Value> items = {});
  // An empty dict. `keys_are_input` marks keys as input when a template iterates them.
  static Value Dict(bool keys_are_input = false);
  static Value Callable(std::shared_ptr<const CallableData> fn);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_callable() const { return kind_ == Kind::kCallable; }

  // Accessors; calling one for the wrong kind returns a neutral value (false, 0, "", empty).
  bool bool_value() const { return kind_ == Kind::kBool && b_; }
  std::int64_t int_value() const { return kind_ == Kind::kInt ? i_ : 0; }
  double float_value() const {
    return kind_ == Kind::kFloat ? f_ : kind_ == Kind::kInt ? double(i_) : 0;
  }
  const std::string& str() const;
  const StringData& string_data() const;
  const std::string& undefined_name() const { return name_; }

  // List access (empty for non-lists). Mutation is visible through every copy.
  const std::vector<Value>& items() const;
  std::vector<Value>* mutable_items();
  void Append(Value v);

  // Dict access (insertion-ordered). Find returns nullptr when absent or not a dict.
  const Value* Find(std::string_view key) const;
  void Set(std::string key, Value v);
  const std::vector<std::pair<std::string, Value>>& entries() const;
  bool dict_keys_are_input() const;
  bool is_namespace() const;
  void MarkNamespace();

  const std::shared_ptr<const CallableData>& callable() const { return fn_; }
  // Identity of a list/dict (for cycle checks); nullptr for scalars.
  const void* container_id() const;

  // Internal (iterative teardown): moves the children of a list/dict owned only by `v` to `out`.
  static void MoveOutChildrenIfUnique(Value& v, std::vector<Value>& out);

 private:
  Kind kind_ = Kind::kUndefined;
  bool b_ = false;
  std::int64_t i_ = 0;
  double f_ = 0;
  std::string name_;  // the variable name of an undefined (for error messages)
  std::shared_ptr<const StringData> s_;
  std::shared_ptr<ListData> list_;
  std::shared_ptr<DictData> dict_;
  std::shared_ptr<const CallableData> fn_;
};

struct ListData {
  ~ListData();
  std::vector<Value> items;
};

struct DictData {
  ~DictData();
  std::vector<std::pair<std::string, Value>> entries;
  std::unordered_map<std::string, std::size_t> index;
  bool keys_are_input = false;
  bool is_namespace = false;
};

// Python truthiness (undefined and none are false, empty containers are false).
bool Truthy(const Value& v);
// Python ==, with int/float/bool compared numerically; depth-capped (deep values compare unequal).
bool Equals(const Value& a, const Value& b);
// Python str(): "None", "True", "1.5", lists as ['a', 1]. Undefined prints as "".
std::string ToPythonString(const Value& v);
// Python repr() (strings quoted).
std::string ToPythonRepr(const Value& v);
// json.dumps as Hugging Face's tojson calls it. Defaults: ensure_ascii=False, no indent,
// separators ", " / ": " (with an indent: "," / ": ").
struct JsonOptions {
  int indent = -1;  // < 0: single line
  bool sort_keys = false;
  bool ensure_ascii = false;   // escape non-ASCII as \uXXXX (surrogate pairs above U+FFFF)
  std::string item_separator;  // empty: the default for the indent mode
  std::string key_separator = ": ";
  std::size_t max_bytes = 64u << 20;
};
// Errors: kInvalidArgument for undefined/callable values, kLimitExceeded past depth 128 or when
// the result would exceed max_bytes.
Result<std::string> ToJson(const Value& v, const JsonOptions& options);
inline Result<std::string> ToJson(const Value& v, int indent = -1, bool sort_keys = false) {
  JsonOptions o;
  o.indent = indent;
  o.sort_keys = sort_keys;
  return ToJson(v, o);
}
// Parses JSON text into a Value (objects keep key order). `mark_as_input` marks every string
// (and dict keys) as caller input. Errors: kInvalidArgument for malformed JSON, kLimitExceeded
// for nesting deeper than 128.
Result<Value> ValueFromJson(std::string_view json, bool mark_as_input);

}  // namespace airlock::tmpl
