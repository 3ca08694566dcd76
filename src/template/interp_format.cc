// Python's printf-style formatting ("fmt % args") as templates use it.
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

// Python's printf-style "fmt % args": conversions s r d i f F e E g G x X o c and %%, with
// flags, width and precision; %(key)s reads a dict key (never an attribute).
Value Interp::PercentFormat(const Value& fmt_v, const Value& args, std::size_t offset) {
  const StringData& fmt = fmt_v.string_data();
  const std::string& f = fmt.text;
  std::vector<Value> positional;
  if (args.is_list())
    positional = args.items();
  else if (!args.is_dict())
    positional.push_back(args);
  std::size_t next = 0;
  StrBuilder b;
  std::size_t lit = 0;
  for (std::size_t i = 0; i < f.size(); ++i) {
    if (f[i] != '%') continue;
    b.Append(fmt, lit, i);
    std::size_t j = i + 1;
    if (j < f.size() && f[j] == '%') {
      b.AppendText("%");
      lit = i = j;
      ++lit;
      continue;
    }
    Value arg;
    bool have = false;
    if (j < f.size() && f[j] == '(') {
      std::size_t close = f.find(')', j);
      if (close == std::string::npos) Error(offset, "incomplete format key");
      std::string key = f.substr(j + 1, close - j - 1);
      if (!args.is_dict()) Error(offset, "format requires a mapping");
      CheckName(key, offset);
      const Value* v = args.Find(key);
      if (!v) Error(offset, "format key '" + key + "' not found");
      arg = *v;
      have = true;
      j = close + 1;
    }
    std::string spec = "%";
    while (j < f.size() && std::strchr("-+ #0", f[j])) spec.push_back(f[j++]);
    int digits = 0;
    while (j < f.size() && std::isdigit(static_cast<unsigned char>(f[j])) && digits < 3)
      spec.push_back(f[j++]), ++digits;
    if (j < f.size() && f[j] == '.') {
      spec.push_back(f[j++]);
      digits = 0;
      while (j < f.size() && std::isdigit(static_cast<unsigned char>(f[j])) && digits < 3)
        spec.push_back(f[j++]), ++digits;
    }
    if (j >= f.size()) Error(offset, "incomplete format");
    char conv = f[j];
    if (!have) {
      if (next >= positional.size()) Error(offset, "not enough arguments for format string");
      arg = positional[next++];
    }
    char buf[512];
    switch (conv) {
      case 's':
      case 'r': {
        StringData text = conv == 's' ? ToStr(arg) : StringData{ToPythonRepr(arg), {}};
        if (conv == 'r' && ContainsInput(arg)) text.input.push_back({0, text.text.size()});
        if (spec == "%") {
          b.Append(text);
        } else {
          std::snprintf(buf, sizeof buf, (spec + "s").c_str(), text.text.substr(0, 256).c_str());
          b.AppendText(buf, !text.input.empty());
        }
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o':
      case 'c': {
        if (!Numeric(arg)) Error(offset, std::string("%") + conv + " format needs a number");
        Value n = AsNum(arg);
        long long x = n.is_int() ? n.int_value()
                      : std::isfinite(n.float_value()) && std::fabs(n.float_value()) < 9.2e18
                          ? (long long)n.float_value()
                          : 0;
        char c = conv == 'i' ? 'd' : conv;
        std::snprintf(buf, sizeof buf, (spec + (c == 'c' ? "c" : std::string("ll") + c)).c_str(),
                      c == 'c' ? int(x & 0x7f) : x);
        b.AppendText(buf);
        break;
      }
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G': {
        if (!Numeric(arg)) Error(offset, std::string("%") + conv + " format needs a number");
        std::snprintf(buf, sizeof buf, (spec + conv).c_str(), AsNum(arg).float_value());
        b.AppendText(buf);
        break;
      }
      default:
        Error(offset, std::string("unsupported format character '") + conv + "'");
    }
    ChargeBytes(b.size(), offset);
    i = j;
    lit = j + 1;
  }
  b.Append(fmt, lit, f.size());
  if (!args.is_dict() && next < positional.size())
    Error(offset, "not all arguments converted during string formatting");
  return Str(b.Take(), offset);
}

}  // namespace airlock::tmpl::internal
