#include "scan/internal/python_source.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <utility>

#include "scan/internal/suspicious_text.h"

namespace airlock::scan::internal {

namespace {

enum class Tok { kName, kString, kNumber, kOp, kNewline };

struct Token {
  Tok kind;
  std::uint64_t offset;
  std::string_view text;   // names, numbers, operators: the source text
  std::string value;       // strings: the decoded value (capped)
  bool non_ascii = false;  // names: holds bytes >= 0x80
};

constexpr std::size_t kMaxLiteralValue = 1u << 16;  // bytes of a literal kept for analysis

bool NameStart(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c >= 0x80;
}
bool NameChar(unsigned char c) { return NameStart(c) || (c >= '0' && c <= '9'); }

// One pass over the source, CPython's way: comments to end of line, string literals with up to
// three prefix letters (r, b, u, f in any case and order), triple quotes, backslash escapes
// (kept verbatim in raw literals), implicit line joining inside brackets, explicit joining with
// a trailing backslash. Unterminated literals run to the end of the text (CPython refuses the
// module; nothing here depends on that).
class Tokenizer {
 public:
  Tokenizer(std::string_view src, std::uint64_t max_tokens) : s_(src), max_(max_tokens) {}

  bool Run(std::vector<Token>& out) {
    while (i_ < s_.size()) {
      if (out.size() >= max_) return false;
      auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
        continue;
      }
      if (c == '\\' && i_ + 1 < s_.size() && (s_[i_ + 1] == '\n' || s_[i_ + 1] == '\r')) {
        i_ += 2;
        continue;
      }
      if (c == '\n' || c == ';') {
        if (depth_ == 0 || c == ';') out.push_back({Tok::kNewline, i_, s_.substr(i_, 1), {}});
        ++i_;
        continue;
      }
      if (c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v') {
        ++i_;
        continue;
      }
      if (NameStart(c)) {
        std::size_t start = i_;
        bool non_ascii = false;
        while (i_ < s_.size() && NameChar(static_cast<unsigned char>(s_[i_]))) {
          non_ascii |= static_cast<unsigned char>(s_[i_]) >= 0x80;
          ++i_;
        }
        std::string_view word = s_.substr(start, i_ - start);
        if (i_ < s_.size() && (s_[i_] == '\'' || s_[i_] == '"') && IsPrefix(word)) {
          out.push_back(ReadString(start, word));
          continue;
        }
        Token t{Tok::kName, start, word, {}};
        t.non_ascii = non_ascii;
        out.push_back(std::move(t));
        continue;
      }
      if (c == '\'' || c == '"') {
        out.push_back(ReadString(i_, {}));
        continue;
      }
      if (c >= '0' && c <= '9') {
        std::size_t start = i_;
        while (i_ < s_.size() && (NameChar(static_cast<unsigned char>(s_[i_])) || s_[i_] == '.'))
          ++i_;
        out.push_back({Tok::kNumber, start, s_.substr(start, i_ - start), {}});
        continue;
      }
      if (c == '(' || c == '[' || c == '{') ++depth_;
      if ((c == ')' || c == ']' || c == '}') && depth_ > 0) --depth_;
      out.push_back({Tok::kOp, i_, s_.substr(i_, 1), {}});
      ++i_;
    }
    return true;
  }

 private:
  static bool IsPrefix(std::string_view w) {
    if (w.empty() || w.size() > 3) return false;
    for (char ch : w) {
      char l = static_cast<char>(ch | 0x20);
      if (l != 'r' && l != 'b' && l != 'u' && l != 'f' && l != 't') return false;
    }
    return true;
  }

  Token ReadString(std::size_t start, std::string_view prefix) {
    bool raw = false;
    for (char ch : prefix) raw |= (ch | 0x20) == 'r';
    i_ = start + prefix.size();
    char q = s_[i_];
    bool triple = i_ + 2 < s_.size() && s_[i_ + 1] == q && s_[i_ + 2] == q;
    i_ += triple ? 3 : 1;
    Token t{Tok::kString, start, {}, {}};
    while (i_ < s_.size()) {
      char ch = s_[i_];
      if (ch == '\\' && i_ + 1 < s_.size()) {
        char n = s_[i_ + 1];
        i_ += 2;
        if (raw) {
          Keep(t, '\\');
          Keep(t, n);
          continue;
        }
        switch (n) {
          case 'n':
            Keep(t, '\n');
            break;
          case 't':
            Keep(t, '\t');
            break;
          case 'r':
            Keep(t, '\r');
            break;
          case '\n':
            break;
          case 'x':
            if (i_ + 1 < s_.size() && Hex(s_[i_]) >= 0 && Hex(s_[i_ + 1]) >= 0) {
              Keep(t, static_cast<char>(Hex(s_[i_]) * 16 + Hex(s_[i_ + 1])));
              i_ += 2;
            }
            break;
          default:
            Keep(t, n);
            break;  // \\, \', \" and the rest: close enough for analysis
        }
        continue;
      }
      if (ch == q) {
        if (!triple) {
          ++i_;
          return t;
        }
        if (i_ + 2 < s_.size() && s_[i_ + 1] == q && s_[i_ + 2] == q) {
          i_ += 3;
          return t;
        }
      }
      if (ch == '\n' && !triple) return t;  // unterminated single-quoted literal
      Keep(t, ch);
      ++i_;
    }
    return t;
  }
  static void Keep(Token& t, char c) {
    if (t.value.size() < kMaxLiteralValue) t.value += c;
  }
  static int Hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  std::string_view s_;
  std::uint64_t max_;
  std::size_t i_ = 0;
  int depth_ = 0;
};

bool StartsWithDotted(std::string_view full, std::string_view prefix) {
  return full == prefix ||
         (full.size() > prefix.size() && full.compare(0, prefix.size(), prefix) == 0 &&
          full[prefix.size()] == '.');
}

// Dotted names and what referring to them means (a reference, not only a call, counts: a
// function stored in a variable is called later under another name).
struct NameRule {
  std::string_view prefix;  // the name and everything under it
  PySignalKind kind;
};
constexpr NameRule kNameRules[] = {
    {"os.system", PySignalKind::kProcess},
    {"os.popen", PySignalKind::kProcess},
    {"os.execl", PySignalKind::kProcess},
    {"os.execle", PySignalKind::kProcess},
    {"os.execlp", PySignalKind::kProcess},
    {"os.execlpe", PySignalKind::kProcess},
    {"os.execv", PySignalKind::kProcess},
    {"os.execve", PySignalKind::kProcess},
    {"os.execvp", PySignalKind::kProcess},
    {"os.execvpe", PySignalKind::kProcess},
    {"os.spawnl", PySignalKind::kProcess},
    {"os.spawnle", PySignalKind::kProcess},
    {"os.spawnlp", PySignalKind::kProcess},
    {"os.spawnv", PySignalKind::kProcess},
    {"os.spawnve", PySignalKind::kProcess},
    {"os.spawnvp", PySignalKind::kProcess},
    {"os.posix_spawn", PySignalKind::kProcess},
    {"os.posix_spawnp", PySignalKind::kProcess},
    {"os.fork", PySignalKind::kProcess},
    {"os.forkpty", PySignalKind::kProcess},
    {"os.startfile", PySignalKind::kProcess},
    {"subprocess", PySignalKind::kProcess},
    {"pty.spawn", PySignalKind::kProcess},
    {"commands", PySignalKind::kProcess},
    {"asyncio.create_subprocess_shell", PySignalKind::kProcess},
    {"asyncio.create_subprocess_exec", PySignalKind::kProcess},
    {"socket", PySignalKind::kNetwork},
    {"urllib.request", PySignalKind::kNetwork},
    {"urllib2", PySignalKind::kNetwork},
    {"requests", PySignalKind::kNetwork},
    {"http.client", PySignalKind::kNetwork},
    {"httpx", PySignalKind::kNetwork},
    {"aiohttp", PySignalKind::kNetwork},
    {"ftplib", PySignalKind::kNetwork},
    {"smtplib", PySignalKind::kNetwork},
    {"telnetlib", PySignalKind::kNetwork},
    {"paramiko", PySignalKind::kNetwork},
    {"pycurl", PySignalKind::kNetwork},
    {"ctypes", PySignalKind::kNativeCode},
    {"_ctypes", PySignalKind::kNativeCode},
    {"cffi", PySignalKind::kNativeCode},
    {"exec", PySignalKind::kDynamicCode},
    {"eval", PySignalKind::kDynamicCode},
    {"compile", PySignalKind::kDynamicCode},
    {"execfile", PySignalKind::kDynamicCode},
    {"__import__", PySignalKind::kDynamicCode},
    {"builtins.exec", PySignalKind::kDynamicCode},
    {"builtins.eval", PySignalKind::kDynamicCode},
    {"builtins.compile", PySignalKind::kDynamicCode},
    {"builtins.__import__", PySignalKind::kDynamicCode},
    {"importlib.import_module", PySignalKind::kDynamicCode},
    {"importlib.__import__", PySignalKind::kDynamicCode},
    {"runpy", PySignalKind::kDynamicCode},
    {"marshal.loads", PySignalKind::kDynamicCode},
    {"types.CodeType", PySignalKind::kDynamicCode},
    {"types.FunctionType", PySignalKind::kDynamicCode},
    {"pickle.loads", PySignalKind::kDynamicCode},
    {"pickle.load", PySignalKind::kDynamicCode},
    {"dill", PySignalKind::kDynamicCode},
    {"cloudpickle", PySignalKind::kDynamicCode},
    {"code.InteractiveInterpreter", PySignalKind::kDynamicCode},
    {"globals", PySignalKind::kReflection},
    {"__builtins__", PySignalKind::kReflection},
    {"builtins.getattr", PySignalKind::kReflection},
    {"vars", PySignalKind::kReflection},
    {"sys.modules", PySignalKind::kReflection},
};

// Functions that turn text into other bytes: with dynamic code, a hidden payload.
constexpr std::string_view kDecoders[] = {
    "base64",         "binascii.unhexlify", "binascii.a2b_base64", "binascii.a2b_hex",
    "codecs.decode",  "zlib.decompress",    "gzip.decompress",     "lzma.decompress",
    "bz2.decompress", "marshal.loads",      "bytes.fromhex",       "bytearray.fromhex",
};

// Callables that write, move or delete the path given as their first argument.
constexpr std::string_view kPathWriters[] = {
    "os.remove",       "os.unlink",   "os.rmdir",    "os.removedirs",   "os.rename",
    "os.replace",      "os.makedirs", "os.mkdir",    "os.chmod",        "os.symlink",
    "shutil.rmtree",   "shutil.move", "shutil.copy", "shutil.copyfile", "shutil.copy2",
    "shutil.copytree", "os.truncate", "os.link",
};

// A path literal that leaves the folder the module runs from.
bool OutsidePath(std::string_view p) {
  if (p.empty()) return false;
  if (p == "/dev/null" || p.starts_with("/tmp/") || p.starts_with("/dev/shm/")) return false;
  return p[0] == '/' || p[0] == '~' || p.starts_with("..") ||
         p.find("/../") != std::string_view::npos || p.find("$HOME") != std::string_view::npos ||
         (p.size() > 2 && p[1] == ':' && (p[2] == '\\' || p[2] == '/'));
}

bool LooksEncoded(std::string_view v) {
  if (v.size() < 256) return false;
  std::size_t b64 = 0, hex = 0;
  for (char c : v) {
    bool h = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    bool b = h || (c >= 'g' && c <= 'z') || (c >= 'G' && c <= 'Z') || c == '+' || c == '/' ||
             c == '=' || c == '-' || c == '_' || c == '\n';
    hex += h;
    b64 += b;
  }
  // No spaces, almost only alphabet characters: data, not prose or code.
  return b64 * 100 >= v.size() * 98 || hex * 100 >= v.size() * 98;
}

class Analyzer {
 public:
  Analyzer(const std::vector<Token>& toks, PyAnalysis& out, const PyLimits& limits)
      : t_(toks), out_(out), limits_(limits) {}

  void Run() {
    bool statement_start = true;
    for (std::size_t k = 0; k < t_.size(); ++k) {
      const Token& tok = t_[k];
      if (tok.kind == Tok::kNewline) {
        statement_start = true;
        continue;
      }
      // Statements start after a newline, ';' or the ':' of a compound statement header.
      bool at_start =
          statement_start || (k > 0 && t_[k - 1].kind == Tok::kOp && t_[k - 1].text == ":");
      statement_start = false;
      if (tok.kind == Tok::kString) {
        Literal(tok);
        continue;
      }
      if (tok.kind != Tok::kName) continue;
      if (tok.non_ascii) {
        Signal(PySignalKind::kNonAsciiName, tok.offset, Printable(tok.text, 40));
      }
      if (at_start && tok.text == "import") {
        k = ImportNames(k + 1);
        statement_start = true;
        continue;
      }
      if (at_start && tok.text == "from" && IsFromImport(k + 1)) {
        k = FromImport(k + 1);
        statement_start = true;
        continue;
      }
      // An attribute of something else (x.os.system, (os).system, mods[0].popen): whole chains
      // are resolved from their first name; an attribute named like a process function is
      // judged by name when the module imports os, subprocess or pty at all.
      if (k > 0 && t_[k - 1].kind == Tok::kOp && t_[k - 1].text == ".") {
        AttributeByName(tok);
        continue;
      }
      std::size_t end = k;
      std::string chain = Chain(k, &end);
      std::string full = Resolve(chain);
      bool call = end + 1 < t_.size() && t_[end + 1].kind == Tok::kOp && t_[end + 1].text == "(";
      Reference(full, tok.offset, call, end + 1);
      k = end;
    }
    bool dynamic = has_kind_.count(PySignalKind::kDynamicCode) != 0;
    if (dynamic && (decoder_offset_ || blob_offset_)) {
      Signal(PySignalKind::kDecodedPayload, decoder_offset_ ? *decoder_offset_ : *blob_offset_,
             decoder_name_.empty() ? "long encoded literal with exec/eval/compile"
                                   : decoder_name_ + " output with exec/eval/compile");
    }
  }

 private:
  // NAME ('.' NAME)* starting at k; *end is the index of its last name.
  std::string Chain(std::size_t k, std::size_t* end) const {
    std::string s(t_[k].text);
    std::size_t j = k;
    while (j + 2 < t_.size() && t_[j + 1].kind == Tok::kOp && t_[j + 1].text == "." &&
           t_[j + 2].kind == Tok::kName && s.size() < 256) {
      s += ".";
      s += t_[j + 2].text;
      j += 2;
    }
    *end = j;
    return s;
  }

  std::string Resolve(const std::string& chain) const {
    std::string_view head = std::string_view(chain).substr(0, chain.find('.'));
    auto it = aliases_.find(std::string(head));
    if (it != aliases_.end()) return it->second + chain.substr(head.size());
    // `from os import *` puts os's names in the module's namespace.
    for (const std::string& m : star_modules_) {
      std::string candidate = m + "." + chain;
      for (const NameRule& r : kNameRules) {
        if (StartsWithDotted(candidate, r.prefix) && r.prefix.find('.') != std::string_view::npos)
          return candidate;
      }
    }
    return chain;
  }

  std::size_t ImportNames(std::size_t k) {
    while (k < t_.size() && t_[k].kind != Tok::kNewline) {
      if (t_[k].kind != Tok::kName) {
        ++k;
        continue;
      }
      std::size_t end = k;
      std::string module = Chain(k, &end);
      k = end + 1;
      std::string alias = module.substr(0, module.find('.'));
      std::string target = alias;
      if (k + 1 < t_.size() && t_[k].kind == Tok::kName && t_[k].text == "as" &&
          t_[k + 1].kind == Tok::kName) {
        alias = std::string(t_[k + 1].text);
        target = module;
        k += 2;
      }
      aliases_[alias] = target;
      Imported(module, t_[end].offset);
    }
    return k;
  }

  // `from X import ...` (not `raise e from x` or `yield from x`).
  bool IsFromImport(std::size_t k) {
    for (std::size_t j = k; j < t_.size() && j < k + 256; ++j) {
      if (!Spend()) return false;
      if (t_[j].kind == Tok::kNewline) return false;
      if (t_[j].kind == Tok::kName && t_[j].text == "import") return true;
      if (t_[j].kind != Tok::kName && !(t_[j].kind == Tok::kOp && t_[j].text == ".")) return false;
    }
    return false;
  }

  std::size_t FromImport(std::size_t k) {
    std::string module;
    while (k < t_.size() && t_[k].kind == Tok::kOp && t_[k].text == ".") {
      module += ".";
      ++k;
    }
    if (k < t_.size() && t_[k].kind == Tok::kName && t_[k].text != "import") {
      std::size_t end = k;
      module += Chain(k, &end);
      k = end + 1;
    }
    if (k >= t_.size() || t_[k].kind != Tok::kName || t_[k].text != "import") return k;
    std::uint64_t offset = t_[k].offset;
    ++k;
    Imported(module, offset);
    while (k < t_.size() && t_[k].kind != Tok::kNewline) {
      const Token& tok = t_[k];
      if (tok.kind == Tok::kOp && tok.text == "*") {
        // Bounded: every name reference is resolved against each star-imported module.
        if (star_modules_.size() < 16 &&
            std::find(star_modules_.begin(), star_modules_.end(), module) == star_modules_.end()) {
          star_modules_.push_back(module);
        }
        ++k;
        continue;
      }
      if (tok.kind != Tok::kName) {
        ++k;
        continue;
      }
      std::string name(tok.text);
      std::string alias = name;
      ++k;
      if (k + 1 < t_.size() && t_[k].kind == Tok::kName && t_[k].text == "as" &&
          t_[k + 1].kind == Tok::kName) {
        alias = std::string(t_[k + 1].text);
        k += 2;
      }
      std::string full = module + "." + name;
      aliases_[alias] = full;
      importing_ = true;
      Reference(full, tok.offset, false, k);
      importing_ = false;
    }
    return k;
  }

  void Imported(const std::string& module, std::uint64_t offset) {
    if (out_.imports.size() < 512) out_.imports.push_back(module);
    imports_process_module_ |= StartsWithDotted(module, "os") ||
                               StartsWithDotted(module, "subprocess") ||
                               StartsWithDotted(module, "pty") || StartsWithDotted(module, "posix");
    importing_ = true;
    Reference(module, offset, false, 0);
    importing_ = false;
  }

  // A reference to `full` (a call when `call`; `args` is the index of its '(').
  void Reference(const std::string& full, std::uint64_t offset, bool call, std::size_t args) {
    for (const NameRule& r : kNameRules) {
      if (StartsWithDotted(full, r.prefix)) {
        // Bare names (exec, eval, globals...) count only when called.
        bool bare = r.prefix.find('.') == std::string_view::npos &&
                    r.kind != PySignalKind::kProcess && r.kind != PySignalKind::kNetwork &&
                    r.kind != PySignalKind::kNativeCode && r.prefix != "runpy" &&
                    r.prefix != "dill" && r.prefix != "cloudpickle";
        if (bare && !call && r.prefix != "__builtins__") continue;
        Signal(r.kind, offset, full);
        break;
      }
    }
    for (std::string_view d : kDecoders) {
      if (StartsWithDotted(full, d) && !decoder_offset_) {
        decoder_offset_ = offset;
        decoder_name_ = full;
      }
    }
    if (!call) return;
    if (full == "getattr" || full == "builtins.getattr" || full == "setattr") Getattr(args, offset);
    if (full == "open" || full == "io.open" || full == "builtins.open" || full == "codecs.open") {
      OpenCall(args, offset);
    }
    for (std::string_view w : kPathWriters) {
      if (full == w) {
        auto first = FirstArgLiteral(args);
        if (first && OutsidePath(*first)) {
          Signal(PySignalKind::kWriteOutside, offset, full + "('" + Printable(*first, 60) + "')");
        }
      }
    }
  }

  void AttributeByName(const Token& tok) {
    static constexpr std::string_view kProcessAttrs[] = {
        "system", "popen",  "Popen",   "check_output", "check_call",   "getoutput",
        "execv",  "execve", "execvp",  "execvpe",      "execl",        "execlp",
        "spawnv", "spawnl", "spawnvp", "posix_spawn",  "posix_spawnp", "startfile"};
    if (!imports_process_module_) return;
    for (std::string_view a : kProcessAttrs) {
      if (tok.text == a) {
        Signal(PySignalKind::kProcess, tok.offset, "<expression>." + std::string(a));
        return;
      }
    }
  }

  // The string literal that is the whole first argument of the call whose '(' is at `args`.
  std::optional<std::string> FirstArgLiteral(std::size_t args) const {
    if (args + 2 >= t_.size() || t_[args + 1].kind != Tok::kString) return std::nullopt;
    const Token& next = t_[args + 2];
    if (next.kind != Tok::kOp || (next.text != "," && next.text != ")")) return std::nullopt;
    return t_[args + 1].value;
  }

  // getattr(obj, "name"): resolved as obj.name; a computed name hides what is reached.
  void Getattr(std::size_t args, std::uint64_t offset) {
    if (args + 4 >= t_.size() || t_[args + 1].kind != Tok::kName) return;
    std::size_t end = args + 1;
    std::string obj = Resolve(Chain(args + 1, &end));
    if (end + 2 >= t_.size() || t_[end + 1].text != ",") return;
    const Token& name = t_[end + 2];
    bool literal_arg = name.kind == Tok::kString && end + 3 < t_.size() &&
                       (t_[end + 3].text == ")" || t_[end + 3].text == ",");
    if (literal_arg) {
      Reference(obj + "." + name.value, offset, false, 0);
      return;
    }
    for (const NameRule& r : kNameRules) {
      if (StartsWithDotted(obj, r.prefix) || obj == "os" || obj == "builtins" || obj == "sys") {
        Signal(PySignalKind::kReflection, offset, "getattr(" + obj + ", <computed name>)");
        return;
      }
    }
  }

  // open(path, mode): a write mode on a path outside the folder.
  void OpenCall(std::size_t args, std::uint64_t offset) {
    int depth = 0;
    std::size_t arg_index = 0;
    bool outside = false, write = false, keyword_mode = false;
    for (std::size_t j = args + 1; j < t_.size() && j < args + 512; ++j) {
      if (!Spend()) return;
      const Token& tok = t_[j];
      if (tok.kind == Tok::kOp && (tok.text == "(" || tok.text == "[" || tok.text == "{")) ++depth;
      if (tok.kind == Tok::kOp && (tok.text == ")" || tok.text == "]" || tok.text == "}")) {
        if (depth-- == 0) break;
      }
      if (depth == 0 && tok.kind == Tok::kOp && tok.text == ",") {
        ++arg_index;
        keyword_mode = false;
        continue;
      }
      if (tok.kind == Tok::kName && tok.text == "mode") keyword_mode = true;
      if (tok.kind == Tok::kName && arg_index == 0 &&
          (tok.text == "expanduser" || tok.text == "home" || tok.text == "expandvars")) {
        outside = true;
      }
      if (tok.kind != Tok::kString) continue;
      if (arg_index == 0 && OutsidePath(tok.value)) outside = true;
      if ((arg_index == 1 || keyword_mode) &&
          tok.value.find_first_of("wax+") != std::string::npos && tok.value.size() <= 4) {
        write = true;
      }
    }
    if (outside && write) {
      Signal(PySignalKind::kWriteOutside, offset, "open(<path outside the folder>, write mode)");
    }
  }

  void Literal(const Token& tok) {
    if (literal_bytes_ > (64u << 20)) return;
    literal_bytes_ += tok.value.size();
    if (LooksEncoded(tok.value)) {
      if (!blob_offset_) blob_offset_ = tok.offset;
      Signal(PySignalKind::kEncodedBlob, tok.offset,
             std::to_string(tok.value.size()) + "-character encoded literal");
    }
    if (tok.value.size() < 8) return;
    for (const TextMatch& m : FindSuspiciousText(tok.value)) {
      if (m.kind == TextKind::kUrl) Signal(PySignalKind::kUrl, tok.offset, m.excerpt);
      if (m.kind == TextKind::kShell) Signal(PySignalKind::kShellCommand, tok.offset, m.excerpt);
    }
  }

  // Look-ahead (open() arguments, `from ... import`) is bounded per construct and in total, so
  // that nested constructs cannot make the analysis quadratic; past the budget the result is
  // marked truncated (inconclusive).
  bool Spend() {
    if (lookahead_budget_ == 0) {
      out_.truncated = true;
      return false;
    }
    --lookahead_budget_;
    return true;
  }

  void Signal(PySignalKind kind, std::uint64_t offset, std::string detail) {
    has_kind_.insert(kind);
    if (out_.signals.size() >= limits_.max_signals) return;
    if (!seen_.insert({kind, detail}).second) return;
    out_.signals.push_back({kind, offset, std::move(detail), importing_});
  }

  const std::vector<Token>& t_;
  PyAnalysis& out_;
  const PyLimits& limits_;
  std::map<std::string, std::string> aliases_;
  std::vector<std::string> star_modules_;
  std::set<std::pair<PySignalKind, std::string>> seen_;
  std::set<PySignalKind> has_kind_;
  std::optional<std::uint64_t> decoder_offset_;
  std::optional<std::uint64_t> blob_offset_;
  std::string decoder_name_;
  std::uint64_t literal_bytes_ = 0;
  bool importing_ = false;  // references made by an import statement
  bool imports_process_module_ = false;
  std::uint64_t lookahead_budget_ = 4'000'000;
};

}  // namespace

std::string_view PySignalName(PySignalKind k) {
  switch (k) {
    case PySignalKind::kProcess:
      return "runs processes";
    case PySignalKind::kNetwork:
      return "network access";
    case PySignalKind::kNativeCode:
      return "native code";
    case PySignalKind::kDynamicCode:
      return "dynamic code";
    case PySignalKind::kDecodedPayload:
      return "decoded payload executed";
    case PySignalKind::kEncodedBlob:
      return "encoded blob";
    case PySignalKind::kUrl:
      return "URL";
    case PySignalKind::kShellCommand:
      return "shell command";
    case PySignalKind::kWriteOutside:
      return "writes outside the folder";
    case PySignalKind::kReflection:
      return "reflection";
    case PySignalKind::kNonAsciiName:
      return "non-ASCII identifier";
  }
  return "signal";
}

PyAnalysis AnalyzePythonSource(std::string_view source, const PyLimits& limits) {
  PyAnalysis out;
  std::vector<Token> tokens;
  Tokenizer tokenizer(source, limits.max_tokens);
  out.truncated = !tokenizer.Run(tokens);
  Analyzer analyzer(tokens, out, limits);
  analyzer.Run();
  return out;
}

}  // namespace airlock::scan::internal
