#include "formats/pickle.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace airlock::formats::pickle {

namespace {

// Opcodes (pickletools names), protocols 0-5.
enum Op : std::uint8_t {
  kMark = '(',
  kStop = '.',
  kPop = '0',
  kPopMark = '1',
  kDup = '2',
  kFloat = 'F',
  kInt = 'I',
  kBinInt = 'J',
  kBinInt1 = 'K',
  kLong = 'L',
  kBinInt2 = 'M',
  kNone = 'N',
  kPersId = 'P',
  kBinPersId = 'Q',
  kReduce = 'R',
  kString = 'S',
  kBinString = 'T',
  kShortBinString = 'U',
  kUnicode = 'V',
  kBinUnicode = 'X',
  kAppend = 'a',
  kBuild = 'b',
  kGlobal = 'c',
  kDict = 'd',
  kEmptyDict = '}',
  kAppends = 'e',
  kGet = 'g',
  kBinGet = 'h',
  kInst = 'i',
  kLongBinGet = 'j',
  kList = 'l',
  kEmptyList = ']',
  kObj = 'o',
  kPut = 'p',
  kBinPut = 'q',
  kLongBinPut = 'r',
  kSetItem = 's',
  kTuple = 't',
  kEmptyTuple = ')',
  kSetItems = 'u',
  kBinFloat = 'G',
  kProto = 0x80,
  kNewObj = 0x81,
  kExt1 = 0x82,
  kExt2 = 0x83,
  kExt4 = 0x84,
  kTuple1 = 0x85,
  kTuple2 = 0x86,
  kTuple3 = 0x87,
  kNewTrue = 0x88,
  kNewFalse = 0x89,
  kLong1 = 0x8a,
  kLong4 = 0x8b,
  kBinBytes = 'B',
  kShortBinBytes = 'C',
  kShortBinUnicode = 0x8c,
  kBinUnicode8 = 0x8d,
  kBinBytes8 = 0x8e,
  kEmptySet = 0x8f,
  kAddItems = 0x90,
  kFrozenSet = 0x91,
  kNewObjEx = 0x92,
  kStackGlobal = 0x93,
  kMemoize = 0x94,
  kFrame = 0x95,
  kByteArray8 = 0x96,
  kNextBuffer = 0x97,
  kReadonlyBuffer = 0x98,
};

constexpr std::uint32_t kNoValue = 0xffffffffu;
constexpr std::size_t kMaxTrackedItemsPerContainer = 1u << 20;
constexpr int kMaxJoblibNesting = 2;
constexpr std::size_t kMaxCarriedBytes = 64u << 20;
// Structured call arguments (Event::call_args): nesting depth, items per sequence, nodes per call.
constexpr int kMaxArgDepth = 6;
constexpr std::size_t kMaxArgItems = 16;
constexpr int kMaxArgNodes = 96;
constexpr std::uint64_t kMaxArgNodesPerStream = 200'000;
// A memo key from which CPython's memo array (8 bytes per slot, doubled) exceeds 64 MiB.
constexpr std::uint64_t kHugeMemoIndex = 1u << 22;

enum class VK : std::uint8_t {
  kNone,
  kBool,
  kInt,
  kBigInt,
  kFloat,
  kStr,
  kBytes,
  kByteArray,
  kList,
  kTuple,
  kDict,
  kSet,
  kFrozenSet,
  kGlobal,
  kCallResult,
  kPersistent,
  kExt,
  kBuffer,
  kOther,
};

struct Value {
  VK kind = VK::kNone;
  bool has_bytes = false;  // kCallResult carrying bytes (bytes(), codecs.encode, ...)
  union {
    std::uint32_t global = kNoValue;  // kGlobal: index into globals_
    std::uint32_t callee;             // kCallResult: the callable value
    std::uint32_t items;              // containers: index into containers_
  };
  std::uint32_t args = kNoValue;  // kCallResult: the argument tuple value
  union {
    std::int64_t i = 0;   // kInt/kBool
    std::uint64_t count;  // containers: logical length
  };
  std::span<const std::byte> bytes;  // kStr (UTF-8) / kBytes / carried bytes / kBigInt raw
};

// Values live in fixed-size chunks: no reallocation (references stay valid while values are
// added) and no doubling spikes on large streams.
class ValueStore {
 public:
  static constexpr std::size_t kChunk = 4096;
  std::size_t size() const { return size_; }
  Value& operator[](std::uint32_t id) { return chunks_[id / kChunk][id % kChunk]; }
  const Value& operator[](std::uint32_t id) const { return chunks_[id / kChunk][id % kChunk]; }
  std::uint32_t Add(VK kind) {
    if (size_ % kChunk == 0) chunks_.push_back(std::make_unique<Value[]>(kChunk));
    Value& v = (*this)[static_cast<std::uint32_t>(size_)];
    v = Value();
    v.kind = kind;
    return static_cast<std::uint32_t>(size_++);
  }

 private:
  std::vector<std::unique_ptr<Value[]>> chunks_;
  std::size_t size_ = 0;
};

struct ParseStop {};

std::string Hex2(std::uint8_t c) {
  static const char* kDigits = "0123456789abcdef";
  return std::string("0x") + kDigits[c >> 4] + kDigits[c & 15];
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

void AppendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

// UTF-8 validation as CPython's decoder does it; `surrogatepass` admits U+D800..U+DFFF.
bool ValidUtf8(std::string_view s, bool surrogatepass) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    int n;
    std::uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
      n = 1;
      cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
      n = 2;
      cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (int k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))) return false;
    if (!surrogatepass && cp >= 0xd800 && cp <= 0xdfff) return false;
    i += n + 1;
  }
  return true;
}

std::string_view AsSv(std::span<const std::byte> b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

std::string Printable(std::string_view s, std::size_t max = 60) {
  std::string out;
  for (std::size_t i = 0; i < s.size() && out.size() < max; ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += "\\x";
      out += Hex2(c).substr(2);
    }
  }
  if (out.size() >= max) out += "...";
  return out;
}

}  // namespace

std::string CanonicalModule(std::string_view m) {
  static const std::pair<std::string_view, std::string_view> kMap[] = {
      {"__builtin__", "builtins"},
      {"copy_reg", "copyreg"},
      {"cPickle", "pickle"},
      {"exceptions", "builtins"},
      {"UserDict", "collections"},
      {"UserList", "collections"},
      {"UserString", "collections"},
      {"commands", "subprocess"},
      {"httplib", "http.client"},
      {"urllib2", "urllib.request"},
      {"cStringIO", "io"},
      {"StringIO", "io"},
      {"thread", "_thread"},
      {"dummy_thread", "_dummy_thread"},
      {"SocketServer", "socketserver"},
      {"xmlrpclib", "xmlrpc.client"},
      {"Queue", "queue"},
      {"urlparse", "urllib.parse"},
      {"BaseHTTPServer", "http.server"},
      {"SimpleHTTPServer", "http.server"},
      {"CGIHTTPServer", "http.server"},
      {"_winreg", "winreg"},
      {"repr", "reprlib"},
      {"ConfigParser", "configparser"},
      {"__builtins__", "builtins"},
  };
  for (const auto& [from, to] : kMap) {
    if (m == from) return std::string(to);
  }
  return std::string(m);
}

namespace {

class Machine {
 public:
  Machine(std::span<const std::byte> data, std::uint64_t start, const Limits& limits,
          ParseResult& out, int joblib_depth)
      : data_(data), pos_(start), limits_(limits), out_(out), joblib_depth_(joblib_depth) {
    out_.start = start;
  }

  void Run() {
    try {
      Loop();
    } catch (const ParseStop&) {
    }
    out_.end = pos_;
  }

 private:
  // ---- errors and reading -------------------------------------------------------------------
  [[noreturn]] void Fail(ErrorKind kind, const std::string& what) {
    out_.error = kind;
    out_.error_offset = op_offset_;
    out_.error_message = "pickle: " + what + " at offset " + std::to_string(op_offset_) + " (" +
                         OpcodeName(op_) + ")";
    throw ParseStop{};
  }
  [[noreturn]] void Corrupt(const std::string& what) { Fail(ErrorKind::kCorrupt, what); }
  [[noreturn]] void Truncated() { Corrupt("pickle data was truncated"); }

  void CheckFrame(std::uint64_t n) {
    if (frame_end_ != 0 && pos_ < frame_end_ && pos_ + n > frame_end_) {
      Anomaly(
          "an opcode argument straddles the end of a FRAME (parsers that honour frames "
          "and CPython's C unpickler disagree about this stream)");
      frame_end_ = 0;
    }
    if (frame_end_ != 0 && pos_ + n >= frame_end_) frame_end_ = 0;
  }

  std::span<const std::byte> Read(std::uint64_t n) {
    if (n > data_.size() - pos_) Truncated();
    CheckFrame(n);
    auto s = data_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  std::uint64_t ReadUint(int n) {
    auto b = Read(n);
    std::uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = (v << 8) | static_cast<std::uint8_t>(b[k]);
    return v;
  }
  // A line without its '\n' (CPython requires the newline when reading from memory).
  std::string_view ReadLine() {
    const char* begin = reinterpret_cast<const char*>(data_.data()) + pos_;
    const void* hit = std::memchr(begin, '\n', data_.size() - pos_);
    if (hit == nullptr) Truncated();
    std::uint64_t len = static_cast<const char*>(hit) - begin;
    CheckFrame(len + 1);
    pos_ += len + 1;
    return std::string_view(begin, len);
  }

  void Anomaly(std::string detail) {
    Event e;
    e.kind = EventKind::kAnomaly;
    e.offset = op_offset_;
    e.opcode = op_;
    e.detail = std::move(detail);
    Emit(std::move(e));
  }

  void Emit(Event e) {
    if (out_.events.size() >= limits_.max_events) {
      ++out_.events_dropped;
      return;
    }
    out_.events.push_back(std::move(e));
  }

  // ---- values -------------------------------------------------------------------------------
  std::uint32_t NewValue(VK kind) {
    if (values_.size() >= limits_.max_values) {
      Fail(ErrorKind::kLimit, "more than " + std::to_string(limits_.max_values) + " values");
    }
    return values_.Add(kind);
  }
  std::uint32_t NewContainer(VK kind) {
    std::uint32_t id = NewValue(kind);
    values_[id].items = static_cast<std::uint32_t>(containers_.size());
    containers_.emplace_back();
    return id;
  }
  void AddItem(std::uint32_t container, std::uint32_t item) {
    Value& v = values_[container];
    ++v.count;
    if (!IsContainer(v.kind) || v.items == kNoValue) return;
    auto& items = containers_[v.items];
    if (items.size() < kMaxTrackedItemsPerContainer && tracked_items_ < limits_.max_values * 2) {
      items.push_back(item);
      ++tracked_items_;
    }
  }
  static bool IsContainer(VK k) {
    return k == VK::kList || k == VK::kTuple || k == VK::kDict || k == VK::kSet ||
           k == VK::kFrozenSet;
  }
  const std::vector<std::uint32_t>* Items(std::uint32_t id) const {
    const Value& v = values_[id];
    if (!IsContainer(v.kind) || v.items == kNoValue) return nullptr;
    return &containers_[v.items];
  }
  std::span<const std::byte> Own(std::string s) {
    decoded_ += s.size();
    if (decoded_ > limits_.max_decoded_bytes) {
      Fail(ErrorKind::kLimit,
           "more than " + std::to_string(limits_.max_decoded_bytes) + " bytes of decoded strings");
    }
    out_.owned.push_back(std::make_unique<std::string>(std::move(s)));
    const std::string& ref = *out_.owned.back();
    return std::as_bytes(std::span<const char>(ref.data(), ref.size()));
  }
  std::uint32_t NewStr(std::span<const std::byte> utf8) {
    std::uint32_t id = NewValue(VK::kStr);
    values_[id].bytes = utf8;
    CheckEmbedded(utf8, true);
    return id;
  }
  std::uint32_t NewBytes(std::span<const std::byte> b, VK kind = VK::kBytes) {
    std::uint32_t id = NewValue(kind);
    values_[id].bytes = b;
    CheckEmbedded(b, false);
    return id;
  }

  // Literals that carry a pickle stream: raw bytes with a PROTO 2-5 header, or text that is
  // the hex or base64 encoding of one.
  void CheckEmbedded(std::span<const std::byte> b, bool is_str) {
    if (b.size() < 8 || embedded_ >= 1000) return;
    std::string_view s = AsSv(b);
    auto proto_ok = [](std::string_view x) {
      return x.size() >= 2 && static_cast<std::uint8_t>(x[0]) == 0x80 &&
             static_cast<std::uint8_t>(x[1]) >= 2 && static_cast<std::uint8_t>(x[1]) <= 5;
    };
    Event e;
    e.kind = EventKind::kEmbedded;
    e.offset = op_offset_;
    e.opcode = op_;
    if (!is_str && proto_ok(s)) {
      e.detail = "raw";
      e.byte_args.push_back(b);
    } else if (is_str && s.size() >= 16 && s[0] == '8' && s[1] == '0' && s[2] == '0' &&
               s[3] >= '2' && s[3] <= '5') {
      std::string out;
      if (!DecodeHex(s, out) || !proto_ok(out)) return;
      e.detail = "hex";
      e.byte_args.push_back(Own(std::move(out)));
    } else if (is_str && s.size() >= 12 && s[0] == 'g' && s[1] == 'A' &&
               (s[2] == 'J' || s[2] == 'N' || s[2] == 'S' || s[2] == 'V')) {
      std::string out;
      if (!DecodeBase64(s, out) || !proto_ok(out)) return;
      e.detail = "base64";
      e.byte_args.push_back(Own(std::move(out)));
    } else {
      return;
    }
    ++embedded_;
    Emit(std::move(e));
  }
  std::uint32_t NewInt(std::int64_t x, VK kind = VK::kInt) {
    std::uint32_t id = NewValue(kind);
    values_[id].i = x;
    return id;
  }
  std::uint32_t NewGlobal(std::string module, std::string qualname, bool computed) {
    Ref r;
    r.module = std::move(module);
    r.qualname = std::move(qualname);
    r.is_global = true;
    r.computed = computed;
    globals_.push_back(std::move(r));
    std::uint32_t id = NewValue(VK::kGlobal);
    values_[id].global = static_cast<std::uint32_t>(globals_.size() - 1);
    return id;
  }

  // ---- stack --------------------------------------------------------------------------------
  std::size_t Fence() const { return marks_.empty() ? 0 : marks_.back(); }
  [[noreturn]] void Underflow() {
    Corrupt(marks_.empty() ? "unpickling stack underflow" : "unexpected MARK found");
  }
  void Push(std::uint32_t v) {
    if (stack_.size() + marks_.size() >= limits_.max_stack) {
      Fail(ErrorKind::kLimit, "stack deeper than " + std::to_string(limits_.max_stack));
    }
    stack_.push_back(v);
  }
  std::uint32_t PopValue() {
    if (stack_.size() <= Fence()) Underflow();
    std::uint32_t v = stack_.back();
    stack_.pop_back();
    return v;
  }
  std::uint32_t Top() {
    if (stack_.size() <= Fence()) Underflow();
    return stack_.back();
  }
  std::size_t Marker() {
    if (marks_.empty()) Corrupt("could not find MARK");
    std::size_t m = marks_.back();
    marks_.pop_back();
    return m;
  }
  // Pops stack[start:] into a new tuple value.
  std::uint32_t PopTuple(std::size_t start) {
    if (start < Fence() || start > stack_.size()) Underflow();
    std::uint32_t t = NewContainer(VK::kTuple);
    for (std::size_t k = start; k < stack_.size(); ++k) AddItem(t, stack_[k]);
    stack_.resize(start);
    return t;
  }

  // ---- symbolic helpers ---------------------------------------------------------------------
  bool IsStr(std::uint32_t id) const { return values_[id].kind == VK::kStr; }
  std::string_view StrOf(std::uint32_t id) const { return AsSv(values_[id].bytes); }
  bool Opaque(std::uint32_t id) const {
    VK k = values_[id].kind;
    return k == VK::kCallResult || k == VK::kPersistent || k == VK::kExt || k == VK::kGlobal ||
           k == VK::kBuffer || k == VK::kOther;
  }
  const Ref* GlobalOf(std::uint32_t id) const {
    const Value& v = values_[id];
    if (v.kind != VK::kGlobal) return nullptr;
    return &globals_[v.global];
  }
  bool IsGlobal(std::uint32_t id, std::string_view module, std::string_view qualname) const {
    const Ref* r = GlobalOf(id);
    return r != nullptr && CanonicalModule(r->module) == module && r->qualname == qualname;
  }

  Ref RefOf(std::uint32_t id, int depth = 0) const {
    if (const Ref* g = GlobalOf(id)) return *g;
    Ref r;
    const Value& v = values_[id];
    switch (v.kind) {
      case VK::kCallResult:
        r.origin =
            depth > 3 ? "result of a call" : "result of " + RefOf(v.callee, depth + 1).Display();
        if (const Ref* g = GlobalOf(v.callee)) {
          r.root_module = g->module;
          r.root_qualname = g->qualname;
        }
        break;
      case VK::kPersistent:
        r.origin = "persistent object";
        break;
      case VK::kExt:
        r.origin = "extension-registry object";
        break;
      case VK::kBuffer:
        r.origin = "out-of-band buffer";
        break;
      default:
        r.origin = std::string(KindName(v.kind)) + " value";
        break;
    }
    return r;
  }

  static std::string_view KindName(VK k) {
    switch (k) {
      case VK::kNone:
        return "None";
      case VK::kBool:
        return "bool";
      case VK::kInt:
      case VK::kBigInt:
        return "int";
      case VK::kFloat:
        return "float";
      case VK::kStr:
        return "str";
      case VK::kBytes:
        return "bytes";
      case VK::kByteArray:
        return "bytearray";
      case VK::kList:
        return "list";
      case VK::kTuple:
        return "tuple";
      case VK::kDict:
        return "dict";
      case VK::kSet:
        return "set";
      case VK::kFrozenSet:
        return "frozenset";
      case VK::kGlobal:
        return "global";
      case VK::kCallResult:
        return "object";
      case VK::kPersistent:
        return "persistent";
      case VK::kExt:
        return "extension";
      case VK::kBuffer:
        return "buffer";
      case VK::kOther:
        return "object";
    }
    return "object";
  }

  std::string Summary(std::uint32_t id, int depth = 0) const {
    const Value& v = values_[id];
    switch (v.kind) {
      case VK::kNone:
        return "None";
      case VK::kBool:
        return v.i ? "True" : "False";
      case VK::kInt:
        return std::to_string(v.i);
      case VK::kStr:
        return "'" + Printable(AsSv(v.bytes)) + "'";
      case VK::kBytes:
      case VK::kByteArray:
        return "b'" + Printable(AsSv(v.bytes)) + "' (" + std::to_string(v.bytes.size()) + " bytes)";
      case VK::kGlobal:
        return RefOf(id).Display();
      case VK::kTuple:
      case VK::kList: {
        if (depth > 2) return v.kind == VK::kTuple ? "(...)" : "[...]";
        std::string s = v.kind == VK::kTuple ? "(" : "[";
        const auto* items = Items(id);
        std::size_t n = 0;
        if (items != nullptr) {
          for (std::uint32_t it : *items) {
            if (n) s += ", ";
            if (++n > 4 || s.size() > 160) {
              s += "...";
              break;
            }
            s += Summary(it, depth + 1);
          }
        }
        return s + (v.kind == VK::kTuple ? ")" : "]");
      }
      case VK::kCallResult:
        if (v.has_bytes) return "bytes(" + std::to_string(v.bytes.size()) + ")";
        return "<" + RefOf(id).origin + ">";
      default:
        return "<" + std::string(KindName(v.kind)) + ">";
    }
  }

  // The structured view of a call argument (see Arg in pickle.h), within a node budget.
  Arg DescribeArg(std::uint32_t id, int depth, int& budget) const {
    Arg a;
    const Value& v = values_[id];
    if (--budget < 0) return a;  // kObject: not described
    switch (v.kind) {
      case VK::kStr:
        a.kind = Arg::Kind::kStr;
        a.bytes = v.bytes;
        break;
      case VK::kBytes:
      case VK::kByteArray:
        a.kind = Arg::Kind::kBytes;
        a.bytes = v.bytes;
        break;
      case VK::kGlobal:
        a.kind = Arg::Kind::kGlobal;
        a.ref = *GlobalOf(id);
        break;
      case VK::kTuple:
      case VK::kList: {
        if (depth >= kMaxArgDepth) return a;
        a.kind = Arg::Kind::kSequence;
        const auto* items = Items(id);
        a.complete = items != nullptr && items->size() == v.count;
        if (items != nullptr) {
          for (std::size_t k = 0; k < items->size() && k < kMaxArgItems; ++k) {
            a.items.push_back(DescribeArg((*items)[k], depth + 1, budget));
          }
          if (items->size() > kMaxArgItems) a.complete = false;
        }
        break;
      }
      case VK::kCallResult:
        if (v.has_bytes) {
          a.kind = Arg::Kind::kBytes;
          a.bytes = v.bytes;
        } else {
          a.ref = RefOf(id);
        }
        break;
      case VK::kPersistent:
      case VK::kExt:
      case VK::kBuffer:
      case VK::kOther:
        a.ref = RefOf(id);
        break;
      default:
        a.kind = Arg::Kind::kData;
        break;
    }
    return a;
  }

  // Bytes an argument carries: str/bytes literals and converter results.
  void CollectBytes(std::uint32_t id, std::vector<std::span<const std::byte>>& out,
                    int depth = 0) const {
    const Value& v = values_[id];
    if (v.kind == VK::kStr || v.kind == VK::kBytes || v.kind == VK::kByteArray ||
        (v.kind == VK::kCallResult && v.has_bytes)) {
      if (out.size() < 16) out.push_back(v.bytes);
      return;
    }
    if ((v.kind == VK::kTuple || v.kind == VK::kList) && depth < 2) {
      if (const auto* items = Items(id)) {
        for (std::size_t k = 0; k < items->size() && k < 16; ++k) {
          CollectBytes((*items)[k], out, depth + 1);
        }
      }
    }
  }

  // codecs.encode(text, encoding[, errors]) is evaluated only for the Latin-1 codec that
  // torch's protocol 2 bytes use; other codecs (base64, zlib, rot13, utf-16...) transform the
  // text, so its bytes are then not known statically.
  enum class Codec { kLatin1, kUtf8, kOther };
  Codec EncodeCodec(std::uint32_t args) const {
    const auto* items = Items(args);
    if (items == nullptr || items->size() != values_[args].count) return Codec::kOther;
    if (items->size() == 1) return Codec::kUtf8;  // codecs.encode's default
    if (!IsStr((*items)[1])) return Codec::kOther;
    std::string enc;
    for (char c : StrOf((*items)[1])) {
      enc += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : (c == '_' ? '-' : c);
    }
    if (enc == "latin1" || enc == "latin-1" || enc == "iso-8859-1" || enc == "iso8859-1" ||
        enc == "l1" || enc == "latin" || enc == "8859" || enc == "cp819" || enc == "iso-ir-100") {
      return Codec::kLatin1;
    }
    if (enc == "utf-8" || enc == "utf8" || enc == "u8" || enc == "utf") return Codec::kUtf8;
    return Codec::kOther;
  }

  // Symbolic evaluation of the few pure converters that turn text into bytes, so a nested
  // pickle passed as codecs.encode(...) or BytesIO(...) can still be extracted.
  void CarryBytes(std::uint32_t result, std::uint32_t callee, std::uint32_t args) {
    const Ref* g = GlobalOf(callee);
    if (g == nullptr || values_[args].kind != VK::kTuple) return;
    const auto* items = Items(args);
    if (items == nullptr || items->empty()) return;
    std::uint32_t a0 = (*items)[0];
    const Value& v0 = values_[a0];
    bool a0_bytes = v0.kind == VK::kBytes || v0.kind == VK::kByteArray ||
                    (v0.kind == VK::kCallResult && v0.has_bytes);
    // Larger texts are not copied (a protocol 2 numpy array can be hundreds of MB); a loader
    // given such an argument is reported as not statically known by the analyzer.
    if (v0.bytes.size() > kMaxCarriedBytes) return;
    std::string m = CanonicalModule(g->module);
    const std::string& q = g->qualname;
    auto set = [&](std::span<const std::byte> b) {
      values_[result].has_bytes = true;
      values_[result].bytes = b;
    };
    Codec codec = (m == "_codecs" || m == "codecs") && q == "encode" && v0.kind == VK::kStr
                      ? EncodeCodec(args)
                      : Codec::kOther;
    if (codec == Codec::kUtf8) {
      set(v0.bytes);
    } else if (codec == Codec::kLatin1) {
      // latin-1 encoding of the UTF-8 text (code points above U+00FF fail in CPython).
      std::string_view s = AsSv(v0.bytes);
      std::string out;
      for (std::size_t k = 0; k < s.size(); ++k) {
        auto c = static_cast<unsigned char>(s[k]);
        if (c < 0x80) {
          out += static_cast<char>(c);
        } else if ((c == 0xc2 || c == 0xc3) && k + 1 < s.size()) {  // U+0080..U+00FF
          out +=
              static_cast<char>(((c & 0x1f) << 6) | (static_cast<unsigned char>(s[k + 1]) & 0x3f));
          ++k;
        } else {
          return;
        }
      }
      set(Own(std::move(out)));
    } else if ((m == "builtins" && (q == "bytes" || q == "bytearray")) ||
               ((m == "io" || m == "_io") && q == "BytesIO")) {
      if (a0_bytes) set(v0.bytes);
    } else if (((m == "base64" && (q == "b64decode" || q == "standard_b64decode" ||
                                   q == "urlsafe_b64decode" || q == "decodebytes")) ||
                (m == "binascii" && q == "a2b_base64")) &&
               (v0.kind == VK::kStr || a0_bytes)) {
      std::string out;
      if (DecodeBase64(AsSv(v0.bytes), out)) set(Own(std::move(out)));
    } else if (((m == "binascii" && (q == "unhexlify" || q == "a2b_hex")) ||
                (m == "builtins" && q == "bytes.fromhex")) &&
               (v0.kind == VK::kStr || a0_bytes)) {
      std::string out;
      if (DecodeHex(AsSv(v0.bytes), out)) set(Own(std::move(out)));
    }
  }

 public:
  static bool DecodeHex(std::string_view s, std::string& out) {
    std::string clean;
    for (char c : s) {
      if (c == ' ' || c == '\n' || c == '\t') continue;
      if (!IsHex(c)) return false;
      clean += c;
    }
    if (clean.size() % 2 != 0) return false;
    for (std::size_t k = 0; k < clean.size(); k += 2) {
      out += static_cast<char>(HexVal(clean[k]) * 16 + HexVal(clean[k + 1]));
    }
    return true;
  }
  static bool DecodeBase64(std::string_view s, std::string& out) {
    std::uint32_t acc = 0;
    int bits = 0;
    for (char c : s) {
      int v;
      if (c >= 'A' && c <= 'Z')
        v = c - 'A';
      else if (c >= 'a' && c <= 'z')
        v = c - 'a' + 26;
      else if (c >= '0' && c <= '9')
        v = c - '0' + 52;
      else if (c == '+' || c == '-')
        v = 62;
      else if (c == '/' || c == '_')
        v = 63;
      else if (c == '=')
        break;
      else if (c == '\n' || c == '\r' || c == ' ')
        continue;
      else
        return false;
      acc = (acc << 6) | static_cast<std::uint32_t>(v);
      bits += 6;
      if (bits >= 8) {
        bits -= 8;
        out += static_cast<char>((acc >> bits) & 0xff);
      }
    }
    return true;
  }

 private:
  // ---- events -------------------------------------------------------------------------------
  void EmitImport(std::uint32_t global_value) {
    Event e;
    e.kind = EventKind::kImport;
    e.offset = op_offset_;
    e.opcode = op_;
    e.ref = *GlobalOf(global_value);
    Emit(std::move(e));
  }
  std::uint32_t EmitCall(std::uint32_t callee, std::uint32_t args, std::string extra = {}) {
    Event e;
    e.kind = EventKind::kCall;
    e.offset = op_offset_;
    e.opcode = op_;
    e.ref = RefOf(callee);
    if (args != kNoValue) {
      e.args = Summary(args);
      CollectBytes(args, e.byte_args);
      const Ref* g = GlobalOf(callee);
      bool describe =
          !limits_.describe_args_of || (g != nullptr && limits_.describe_args_of(g->qualname));
      // Events past max_events are dropped (and reported); the per-stream node budget keeps a
      // stream of many such calls from costing memory per call. Past it, arguments stay
      // unknown (args_known false), which the scanner treats as not known statically.
      bool kept = out_.events.size() < limits_.max_events;
      if (describe && kept && arg_nodes_left_ > 0 && values_[args].kind == VK::kTuple) {
        const auto* items = Items(args);
        e.args_known = items != nullptr && items->size() == values_[args].count;
        int budget = kMaxArgNodes;
        if (items != nullptr) {
          for (std::size_t k = 0; k < items->size() && k < kMaxArgItems; ++k) {
            e.call_args.push_back(DescribeArg((*items)[k], 0, budget));
          }
          if (items->size() > kMaxArgItems) e.args_known = false;
        }
        arg_nodes_left_ -=
            std::min<std::uint64_t>(arg_nodes_left_, kMaxArgNodes - std::max(budget, 0));
      }
    }
    if (!extra.empty()) e.args += extra;
    Emit(std::move(e));
    std::uint32_t r = NewValue(VK::kCallResult);
    values_[r].callee = callee;
    values_[r].args = args;
    if (args != kNoValue) CarryBytes(r, callee, args);
    return r;
  }
  // A method called on an object that is not a builtin container (APPEND/SETITEM/ADDITEMS).
  void EmitMethodCall(std::uint32_t obj, std::string_view method, std::uint32_t arg) {
    Event e;
    e.kind = EventKind::kCall;
    e.offset = op_offset_;
    e.opcode = op_;
    e.ref = RefOf(obj);
    if (e.ref.is_global) {
      e.ref.qualname += "." + std::string(method);
    } else {
      e.ref.origin += "." + std::string(method);
    }
    if (arg != kNoValue) {
      e.args = Summary(arg);
      CollectBytes(arg, e.byte_args);
    }
    Emit(std::move(e));
  }

  // find_class: record the import and push the global.
  void FindClass(std::string module, std::string qualname, bool computed) {
    std::uint32_t g = NewGlobal(std::move(module), std::move(qualname), computed);
    EmitImport(g);
    Push(g);
  }

  // ---- text argument decoding ---------------------------------------------------------------
  // Python's bytes escape decoding used by STRING.
  std::string DecodeEscape(std::string_view s) {
    std::string out;
    for (std::size_t k = 0; k < s.size(); ++k) {
      char c = s[k];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (++k >= s.size()) Corrupt("Trailing \\ in string");
      c = s[k];
      switch (c) {
        case '\n':
          break;
        case '\\':
          out += '\\';
          break;
        case '\'':
          out += '\'';
          break;
        case '"':
          out += '"';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 't':
          out += '\t';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 'v':
          out += '\v';
          break;
        case 'a':
          out += '\a';
          break;
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7': {
          int v = c - '0';
          for (int d = 0; d < 2 && k + 1 < s.size() && s[k + 1] >= '0' && s[k + 1] <= '7'; ++d) {
            v = v * 8 + (s[++k] - '0');
          }
          out += static_cast<char>(v & 0xff);
          break;
        }
        case 'x':
          if (k + 2 < s.size() && IsHex(s[k + 1]) && IsHex(s[k + 2])) {
            out += static_cast<char>(HexVal(s[k + 1]) * 16 + HexVal(s[k + 2]));
            k += 2;
          } else {
            Corrupt("invalid \\x escape in STRING");
          }
          break;
        default:
          out += '\\';
          out += c;
          break;
      }
    }
    return out;
  }

  // raw-unicode-escape decoding used by UNICODE: only \uXXXX and \UXXXXXXXX (after an odd run
  // of backslashes) are escapes; every other byte is Latin-1.
  std::string DecodeRawUnicodeEscape(std::string_view s) {
    std::string out;
    std::size_t k = 0;
    while (k < s.size()) {
      auto c = static_cast<unsigned char>(s[k]);
      if (c != '\\') {
        AppendUtf8(out, c);
        ++k;
        continue;
      }
      std::size_t run = 0;
      while (k < s.size() && s[k] == '\\') {
        ++run;
        ++k;
      }
      bool escape = (run % 2 == 1) && k < s.size() && (s[k] == 'u' || s[k] == 'U');
      for (std::size_t r = 0; r < run - (escape ? 1 : 0); ++r) out += '\\';
      if (!escape) continue;
      int digits = s[k] == 'u' ? 4 : 8;
      ++k;
      std::uint32_t cp = 0;
      for (int d = 0; d < digits; ++d) {
        if (k >= s.size() || !IsHex(s[k])) {
          Corrupt(digits == 4 ? "truncated \\uXXXX escape" : "truncated \\UXXXXXXXX escape");
        }
        cp = cp * 16 + static_cast<std::uint32_t>(HexVal(s[k++]));
      }
      if (cp > 0x10ffff) Corrupt("\\Uxxxxxxxx out of range");
      AppendUtf8(out, cp);
    }
    return out;
  }

  // PyLong_FromString(s, NULL, 10) on a C string (stops at an embedded NUL): optional
  // whitespace and sign, digits with single underscores between them, trailing whitespace.
  std::optional<std::int64_t> ParseDecimal(std::string_view line) {
    std::size_t nul = line.find('\0');
    if (nul != std::string_view::npos) line = line.substr(0, nul);
    std::size_t k = 0;
    auto space = [](char c) {
      return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
    };
    while (k < line.size() && space(line[k])) ++k;
    bool neg = false;
    if (k < line.size() && (line[k] == '+' || line[k] == '-')) neg = line[k++] == '-';
    std::size_t digits = 0;
    unsigned __int128 v = 0;
    bool overflow = false;
    while (k < line.size()) {
      char c = line[k];
      if (c >= '0' && c <= '9') {
        v = v * 10 + static_cast<unsigned>(c - '0');
        if (v > (static_cast<unsigned __int128>(1) << 64)) overflow = true;
        ++digits;
        ++k;
      } else if (c == '_' && digits > 0 && k + 1 < line.size() && line[k + 1] >= '0' &&
                 line[k + 1] <= '9') {
        ++k;
      } else {
        break;
      }
    }
    while (k < line.size() && space(line[k])) ++k;
    if (digits == 0 || k != line.size()) return std::nullopt;
    if (overflow || v > static_cast<unsigned __int128>(INT64_MAX)) {
      return neg ? std::optional<std::int64_t>(INT64_MIN) : std::optional<std::int64_t>(INT64_MAX);
    }
    return neg ? -static_cast<std::int64_t>(v) : static_cast<std::int64_t>(v);
  }

  // ---- memo ---------------------------------------------------------------------------------
  void MemoPut(std::uint64_t idx) {
    if (stack_.size() <= Fence()) Underflow();
    // CPython's C unpickler keeps the memo in an array indexed by the key and grows it to twice
    // the largest key written: picklers number memo entries 0, 1, 2..., so a key far beyond the
    // opcodes seen (LONG_BINPUT 0xffffffff: a 64 GiB array) only serves to exhaust memory.
    if (idx >= kHugeMemoIndex && idx > out_.ops && !huge_memo_reported_) {
      huge_memo_reported_ = true;
      Anomaly("memo index " + std::to_string(idx) + " after " + std::to_string(out_.ops) +
              " opcodes (CPython's C unpickler grows its memo array to twice this index: "
              "memory exhaustion)");
    }
    auto [it, inserted] = memo_.insert_or_assign(idx, stack_.back());
    (void)it;
    if (inserted && memo_.size() > limits_.max_memo) {
      Fail(ErrorKind::kLimit, "more than " + std::to_string(limits_.max_memo) + " memo entries");
    }
  }
  void MemoGet(std::uint64_t idx) {
    auto it = memo_.find(idx);
    if (it == memo_.end()) Corrupt("Memo value not found at index " + std::to_string(idx));
    Push(it->second);
  }

  // ---- joblib -------------------------------------------------------------------------------
  bool IsWrapperClass(std::uint32_t cls) const {
    const Ref* g = GlobalOf(cls);
    if (g == nullptr || g->qualname != "NumpyArrayWrapper") return false;
    return g->module == "joblib.numpy_pickle" ||
           g->module == "sklearn.externals.joblib.numpy_pickle";
  }
  // An instance made by NEWOBJ/REDUCE on the class, or (protocols 0-1) by
  // copyreg._reconstructor(NumpyArrayWrapper, object, None).
  bool IsJoblibWrapper(std::uint32_t inst) const {
    const Value& v = values_[inst];
    if (v.kind != VK::kCallResult || v.callee == kNoValue) return false;
    if (IsWrapperClass(v.callee)) return true;
    if (IsGlobal(v.callee, "copyreg", "_reconstructor") && v.args != kNoValue) {
      const auto* a = Items(v.args);
      return a != nullptr && !a->empty() && IsWrapperClass((*a)[0]);
    }
    return false;
  }
  std::optional<std::uint32_t> DictGet(std::uint32_t dict, std::string_view key) const {
    if (values_[dict].kind != VK::kDict) return std::nullopt;
    const auto* items = Items(dict);
    if (items == nullptr) return std::nullopt;
    std::optional<std::uint32_t> found;
    for (std::size_t k = 0; k + 1 < items->size(); k += 2) {
      if (IsStr((*items)[k]) && StrOf((*items)[k]) == key) found = (*items)[k + 1];
    }
    return found;
  }
  // Item size of a numpy dtype descr ('<f8', '|u1', 'U10', 'O'...); 0 for object; nullopt
  // when unknown.
  static std::optional<std::uint64_t> DtypeItemSize(std::string_view d, bool* is_object) {
    *is_object = false;
    if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '='))
      d.remove_prefix(1);
    if (d.empty()) return std::nullopt;
    char kind = d[0];
    std::string_view rest = d.substr(1);
    std::size_t bracket = rest.find('[');
    if (bracket != std::string_view::npos) rest = rest.substr(0, bracket);
    if (kind == 'O') {
      *is_object = true;
      return 0;
    }
    if (!rest.empty()) {
      std::uint64_t n = 0;
      for (char c : rest) {
        if (c < '0' || c > '9' || n > (1ull << 40)) return std::nullopt;
        n = n * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (kind == 'U') n *= 4;
      if (std::string_view("biufcSUVMm?").find(kind) == std::string_view::npos) return std::nullopt;
      return n;
    }
    switch (kind) {
      case '?':
      case 'b':
      case 'B':
        return 1;
      case 'h':
      case 'H':
      case 'e':
        return 2;
      case 'i':
      case 'I':
      case 'f':
        return 4;
      case 'l':
      case 'L':
      case 'q':
      case 'Q':
      case 'd':
      case 'F':
      case 'M':
      case 'm':
        return 8;
      case 'g':
      case 'D':
        return 16;
      case 'G':
        return 32;
      default:
        return std::nullopt;
    }
  }

  // ---- numpy dtypes -------------------------------------------------------------------------
  // numpy.dtype(...) or numpy.dtypes.<X>DType(...) called in this stream.
  bool IsDtypeObject(std::uint32_t id) const {
    const Value& v = values_[id];
    if (v.kind != VK::kCallResult || v.callee == kNoValue) return false;
    const Ref* g = GlobalOf(v.callee);
    if (g == nullptr) return false;
    std::string m = CanonicalModule(g->module);
    return ((m == "numpy" || m == "numpy.core.multiarray" || m == "numpy._core.multiarray") &&
            g->qualname == "dtype") ||
           (m == "numpy.dtypes" && g->qualname.ends_with("DType"));
  }

  struct DtypeInfo {
    bool known = false;       // false: the dtype could not be understood statically
    bool has_object = false;  // numpy's dtype.hasobject
    std::uint64_t itemsize = 0;
    // The state's flags say "no objects" while its fields or sub-array hold objects: numpy
    // trusts the flags and reads object pointers from raw file bytes (a crash at best).
    bool flags_disagree = false;
  };

  // dtype.hasobject and itemsize as numpy computes them for a dtype built in this stream: from
  // its constructor argument (a typestr, or a list of (name, format[, shape]) fields) and from the
  // state BUILD gave it (dtype.__setstate__: version, byte order, sub-array, names, fields,
  // elsize, alignment, flags). numpy trusts the state's flags (NPY_ITEM_HASOBJECT = 1) and its
  // fields, so any object field, object sub-array or object flag counts; anything not understood
  // makes the dtype unknown.
  DtypeInfo DescribeDtype(std::uint32_t id, int depth) const {
    DtypeInfo info;
    if (depth > 8 || !IsDtypeObject(id)) return info;
    const Value& dv = values_[id];
    const auto* a = dv.args != kNoValue ? Items(dv.args) : nullptr;
    if (a == nullptr || a->empty()) return info;
    bool flexible = false;
    if (IsStr((*a)[0])) {
      std::string_view typestr = StrOf((*a)[0]);
      auto size = DtypeItemSize(typestr, &info.has_object);
      if (!size) return info;
      info.itemsize = *size;
      std::string_view t = typestr;
      if (!t.empty() && (t[0] == '<' || t[0] == '>' || t[0] == '|' || t[0] == '=')) {
        t.remove_prefix(1);
      }
      flexible = !t.empty() && (t[0] == 'V' || t[0] == 'S' || t[0] == 'U' || t[0] == 'a');
    } else {
      DtypeInfo fields = DescribeFieldList((*a)[0], depth);
      if (!fields.known) return info;
      info = fields;
    }
    auto st = dtype_state_.find(id);
    if (st != dtype_state_.end()) {
      if (!ApplyDtypeState(st->second, flexible, depth, info)) return DtypeInfo{};
    }
    info.known = true;
    return info;
  }

  // [(name, format[, shape]), ...] as numpy.dtype() takes it.
  DtypeInfo DescribeFieldList(std::uint32_t list, int depth) const {
    DtypeInfo info;
    if (values_[list].kind != VK::kList) return info;
    const auto* fields = Items(list);
    if (fields == nullptr || fields->size() != values_[list].count) return info;
    for (std::uint32_t f : *fields) {
      const auto* parts = values_[f].kind == VK::kTuple ? Items(f) : nullptr;
      if (parts == nullptr || parts->size() < 2 || parts->size() > 3) return DtypeInfo{};
      DtypeInfo sub = DescribeFormat((*parts)[1], depth + 1);
      if (!sub.known) return DtypeInfo{};
      std::uint64_t count = 1;
      if (parts->size() == 3 && !ShapeCount((*parts)[2], &count)) return DtypeInfo{};
      std::uint64_t bytes = 0;
      std::uint64_t each = sub.has_object ? 8 : sub.itemsize;
      if (__builtin_mul_overflow(each, count, &bytes) ||
          __builtin_add_overflow(info.itemsize, bytes, &info.itemsize)) {
        return DtypeInfo{};
      }
      info.has_object |= sub.has_object;
    }
    info.known = true;
    return info;
  }

  // A field format: a typestr, a nested field list, or a dtype object.
  DtypeInfo DescribeFormat(std::uint32_t id, int depth) const {
    if (depth > 8) return DtypeInfo{};
    if (IsStr(id)) {
      DtypeInfo info;
      auto size = DtypeItemSize(StrOf(id), &info.has_object);
      if (!size) return DtypeInfo{};
      info.itemsize = info.has_object ? 8 : *size;
      info.known = true;
      return info;
    }
    if (values_[id].kind == VK::kList) return DescribeFieldList(id, depth);
    DtypeInfo info = DescribeDtype(id, depth + 1);
    if (info.known && info.has_object && info.itemsize == 0) info.itemsize = 8;
    return info;
  }

  // An int or a tuple of ints (a sub-array shape): the element count.
  bool ShapeCount(std::uint32_t id, std::uint64_t* count) const {
    *count = 1;
    if (values_[id].kind == VK::kInt) {
      if (values_[id].i < 0) return false;
      *count = static_cast<std::uint64_t>(values_[id].i);
      return true;
    }
    const auto* dims = values_[id].kind == VK::kTuple ? Items(id) : nullptr;
    if (dims == nullptr || dims->size() != values_[id].count) return false;
    for (std::uint32_t d : *dims) {
      if (values_[d].kind != VK::kInt || values_[d].i < 0 ||
          __builtin_mul_overflow(*count, static_cast<std::uint64_t>(values_[d].i), count)) {
        return false;
      }
    }
    return true;
  }

  // dtype.__setstate__((version, endian, subarray, names, fields, elsize, alignment, flags[,
  // metadata])); versions below 3 have no flags and numpy recomputes them from the fields.
  bool ApplyDtypeState(std::uint32_t state, bool flexible, int depth, DtypeInfo& info) const {
    const auto* s = values_[state].kind == VK::kTuple ? Items(state) : nullptr;
    if (s == nullptr || s->size() != values_[state].count || s->size() < 5) return false;
    const Value& version = values_[(*s)[0]];
    if (version.kind != VK::kInt) return false;
    std::uint32_t subarray = (*s)[2];
    std::uint32_t fields = (*s)[4];
    if (values_[subarray].kind != VK::kNone) {
      const auto* sa = values_[subarray].kind == VK::kTuple ? Items(subarray) : nullptr;
      if (sa == nullptr || sa->size() != 2) return false;
      DtypeInfo base = DescribeFormat((*sa)[0], depth + 1);
      std::uint64_t count = 1;
      if (!base.known || !ShapeCount((*sa)[1], &count)) return false;
      info.has_object |= base.has_object;
    }
    if (values_[fields].kind != VK::kNone) {
      const auto* kv = values_[fields].kind == VK::kDict ? Items(fields) : nullptr;
      // DICT counts pairs, SETITEMS counts keys and values: either way nothing was dropped.
      if (kv == nullptr || kv->size() % 2 != 0 ||
          (kv->size() != values_[fields].count && kv->size() != 2 * values_[fields].count)) {
        return false;
      }
      for (std::size_t k = 1; k < kv->size(); k += 2) {
        const auto* field = values_[(*kv)[k]].kind == VK::kTuple ? Items((*kv)[k]) : nullptr;
        if (field == nullptr || field->empty()) return false;
        DtypeInfo sub = DescribeFormat((*field)[0], depth + 1);
        if (!sub.known) return false;
        info.has_object |= sub.has_object;
        info.flags_disagree |= sub.flags_disagree;
      }
    }
    if (s->size() >= 8) {
      const Value& flags = values_[(*s)[7]];
      if (flags.kind != VK::kInt) return false;
      if (info.has_object && !(flags.i & 1)) info.flags_disagree = true;
      if (flags.i & 1) info.has_object = true;  // NPY_ITEM_HASOBJECT
      const Value& elsize = values_[(*s)[5]];
      if (elsize.kind != VK::kInt) return false;
      if (flexible && elsize.i >= 0) info.itemsize = static_cast<std::uint64_t>(elsize.i);
    } else if (version.i >= 3) {
      return false;
    }
    return true;
  }

  // joblib's NumpyUnpickler.load_build: after the wrapper's state is set, the array data is
  // read straight from the file: [1 padding-length byte + padding] + count * itemsize bytes,
  // or, for object arrays, one nested pickle.
  void JoblibReadArray(std::uint32_t wrapper, std::uint32_t state) {
    auto shape = DictGet(state, "shape");
    auto dtype = DictGet(state, "dtype");
    if (!shape || !dtype || values_[*shape].kind != VK::kTuple) {
      Fail(ErrorKind::kUnsupported, "joblib NumpyArrayWrapper without a readable shape/dtype");
    }
    std::uint64_t count = 1;
    if (const auto* dims = Items(*shape)) {
      if (dims->size() != values_[*shape].count) {
        Fail(ErrorKind::kUnsupported, "joblib array shape too long");
      }
      for (std::uint32_t d : *dims) {
        if (values_[d].kind != VK::kInt || values_[d].i < 0 ||
            __builtin_mul_overflow(count, static_cast<std::uint64_t>(values_[d].i), &count)) {
          Corrupt("joblib array shape is not a tuple of non-negative ints");
        }
      }
    }
    DtypeInfo info = DescribeDtype(*dtype, 0);
    if (!info.known) {
      Fail(ErrorKind::kUnsupported,
           "joblib array with a dtype we cannot size or cannot tell holds objects");
    }
    std::optional<std::uint64_t> itemsize = info.itemsize;
    bool is_object = info.has_object;
    if (info.flags_disagree) {
      Anomaly(
          "numpy dtype state: its fields or sub-array hold objects but its flags say they do not; "
          "numpy trusts the flags and joblib reads object pointers from the raw file bytes "
          "(memory corruption)");
    }
    std::uint64_t at = pos_;
    if (is_object) {
      if (count == 0) return;
      if (joblib_depth_ >= kMaxJoblibNesting) {
        Fail(ErrorKind::kLimit, "joblib object arrays nested too deeply");
      }
      ParseResult sub;
      Machine m(data_, pos_, limits_, sub, joblib_depth_ + 1);
      m.Run();
      for (auto& e : sub.events) Emit(std::move(e));
      for (auto& o : sub.owned) out_.owned.push_back(std::move(o));
      pos_ = sub.end;
      if (sub.error != ErrorKind::kNone) {
        out_.error = sub.error;
        out_.error_offset = sub.error_offset;
        out_.error_message = sub.error_message + " (in a joblib object array)";
        throw ParseStop{};
      }
      if (!sub.stopped) Truncated();
    } else {
      std::uint64_t n = 0;
      auto alignment = DictGet(state, "numpy_array_alignment_bytes");
      if (alignment && values_[*alignment].kind != VK::kNone) {
        auto pad = ReadUint(1);
        Read(pad);
      }
      if (__builtin_mul_overflow(count, *itemsize, &n) || n > data_.size() - pos_) {
        Corrupt("joblib array data (" + std::to_string(count) + " x " + std::to_string(*itemsize) +
                " bytes) runs past the end of the file");
      }
      pos_ += n;
      Event e;
      e.kind = EventKind::kJoblibArray;
      e.offset = at;
      e.opcode = op_;
      e.length = pos_ - at;
      Emit(std::move(e));
    }
    (void)wrapper;
    stack_.back() = NewValue(VK::kOther);
  }

  // ---- the interpreter ----------------------------------------------------------------------
  void Loop() {
    while (true) {
      if (pos_ >= data_.size()) {
        op_offset_ = pos_;
        op_ = 0;
        Corrupt("Ran out of input");
      }
      if (++out_.ops > limits_.max_ops) {
        Fail(ErrorKind::kLimit, "more than " + std::to_string(limits_.max_ops) + " opcodes");
      }
      op_offset_ = pos_;
      op_ = static_cast<std::uint8_t>(Read(1)[0]);
      if (Step()) return;
    }
  }

  // Executes one opcode; true at STOP.
  bool Step() {
    switch (op_) {
      case kStop: {
        std::uint32_t v = PopValue();
        Summarize(v);
        out_.stopped = true;
        return true;
      }
      case kProto: {
        std::uint8_t p = static_cast<std::uint8_t>(Read(1)[0]);
        if (p > 5)
          Fail(ErrorKind::kUnsupported, "unsupported pickle protocol: " + std::to_string(p));
        if (out_.ops > 1) Anomaly("PROTO opcode not at the start of the stream");
        out_.protocol = p;
        return false;
      }
      case kFrame: {
        std::uint64_t n = ReadUint(8);
        if (frame_end_ != 0 && pos_ < frame_end_) {
          Anomaly("a FRAME starts before the previous frame ended");
        }
        if (n > data_.size() - pos_) {
          // CPython's C unpickler fails here; the pure-Python one (used by joblib and dill)
          // reads the short frame and runs what it holds. Follow the permissive reader.
          Anomaly("FRAME length " + std::to_string(n) + " exceeds the " +
                  std::to_string(data_.size() - pos_) +
                  " bytes left (loaders disagree about this stream)");
          n = data_.size() - pos_;
        }
        frame_end_ = n == 0 ? 0 : pos_ + n;
        return false;
      }
      case kMark:
        if (stack_.size() + marks_.size() >= limits_.max_stack) {
          Fail(ErrorKind::kLimit, "stack deeper than " + std::to_string(limits_.max_stack));
        }
        marks_.push_back(stack_.size());
        return false;
      case kPop:
        if (!marks_.empty() && marks_.back() == stack_.size()) {
          marks_.pop_back();
        } else {
          PopValue();
        }
        return false;
      case kPopMark: {
        std::size_t m = Marker();
        stack_.resize(std::min(stack_.size(), m));
        return false;
      }
      case kDup:
        Push(Top());
        return false;
      // ---- numbers
      case kInt: {
        std::string_view line = ReadLine();
        if (line.size() + 1 < 2) Truncated();
        std::string_view c = line.substr(0, line.find('\0'));
        if (c == "00" || c == "01") {
          Push(NewInt(c == "01", VK::kBool));
          return false;
        }
        auto v = ParseDecimal(line);
        bool alnum_ok = !c.empty();
        for (char ch : c) {
          if (!(IsHex(ch) || ch == 'x' || ch == 'X' || ch == 'o' || ch == 'O' || ch == 'b' ||
                ch == 'B' || ch == '_' || ch == '-' || ch == '+' || ch == ' ' || ch == '\t' ||
                ch == '\r')) {
            alnum_ok = false;
          }
        }
        if (!v && !alnum_ok) Corrupt("could not convert string to int");
        Push(NewInt(v.value_or(0)));
        return false;
      }
      case kBinInt:
        Push(NewInt(static_cast<std::int32_t>(ReadUint(4))));
        return false;
      case kBinInt1:
        Push(NewInt(static_cast<std::int64_t>(ReadUint(1))));
        return false;
      case kBinInt2:
        Push(NewInt(static_cast<std::int64_t>(ReadUint(2))));
        return false;
      case kLong: {
        std::string_view line = ReadLine();
        if (line.size() + 1 < 2) Truncated();
        std::string_view c = line.substr(0, line.find('\0'));
        if (!c.empty() && c.back() == 'L') c.remove_suffix(1);
        auto v = ParseDecimal(c);
        if (!v) Corrupt("invalid literal for int() with base 10");
        Push(NewInt(*v));
        return false;
      }
      case kLong1:
      case kLong4: {
        std::int64_t n = op_ == kLong1 ? static_cast<std::int64_t>(ReadUint(1))
                                       : static_cast<std::int32_t>(ReadUint(4));
        if (n < 0) Corrupt("LONG pickle has negative byte count");
        auto b = Read(static_cast<std::uint64_t>(n));
        if (n <= 8) {
          std::uint64_t u = 0;
          for (std::int64_t k = n - 1; k >= 0; --k) u = (u << 8) | static_cast<std::uint8_t>(b[k]);
          if (n > 0 && n < 8 && (static_cast<std::uint8_t>(b[n - 1]) & 0x80)) {
            u |= ~0ull << (8 * n);
          }
          Push(NewInt(static_cast<std::int64_t>(u)));
        } else {
          std::uint32_t id = NewValue(VK::kBigInt);
          values_[id].bytes = b;
          Push(id);
        }
        return false;
      }
      case kFloat: {
        std::string_view line = ReadLine();
        if (line.size() + 1 < 2) Truncated();
        Push(NewValue(VK::kFloat));
        return false;
      }
      case kBinFloat:
        Read(8);
        Push(NewValue(VK::kFloat));
        return false;
      case kNone:
        Push(NewValue(VK::kNone));
        return false;
      case kNewTrue:
        Push(NewInt(1, VK::kBool));
        return false;
      case kNewFalse:
        Push(NewInt(0, VK::kBool));
        return false;
      // ---- strings and bytes
      case kString: {
        std::string_view line = ReadLine();
        if (line.size() >= 2 && line.front() == line.back() &&
            (line.front() == '\'' || line.front() == '"')) {
          Push(NewStr(Own(DecodeEscape(line.substr(1, line.size() - 2)))));
        } else {
          Corrupt("the STRING opcode argument must be quoted");
        }
        return false;
      }
      case kBinString:
      case kShortBinString: {
        std::int64_t n = op_ == kShortBinString ? static_cast<std::int64_t>(ReadUint(1))
                                                : static_cast<std::int32_t>(ReadUint(4));
        if (n < 0) Corrupt("BINSTRING pickle has negative byte count");
        Push(NewStr(Read(static_cast<std::uint64_t>(n))));
        return false;
      }
      case kBinBytes:
      case kShortBinBytes:
      case kBinBytes8:
      case kByteArray8: {
        int w = op_ == kShortBinBytes ? 1 : op_ == kBinBytes ? 4 : 8;
        std::uint64_t n = ReadUint(w);
        if (n > static_cast<std::uint64_t>(INT64_MAX)) {
          Corrupt("BINBYTES exceeds system's maximum size");
        }
        Push(NewBytes(Read(n), op_ == kByteArray8 ? VK::kByteArray : VK::kBytes));
        return false;
      }
      case kUnicode: {
        std::string_view line = ReadLine();
        Push(NewStr(Own(DecodeRawUnicodeEscape(line))));
        return false;
      }
      case kBinUnicode:
      case kShortBinUnicode:
      case kBinUnicode8: {
        int w = op_ == kShortBinUnicode ? 1 : op_ == kBinUnicode ? 4 : 8;
        std::uint64_t n = ReadUint(w);
        if (n > static_cast<std::uint64_t>(INT64_MAX)) {
          Corrupt("BINUNICODE exceeds system's maximum size");
        }
        auto b = Read(n);
        if (!ValidUtf8(AsSv(b), true)) Corrupt("'utf-8' codec can't decode the string");
        Push(NewStr(b));
        return false;
      }
      case kNextBuffer: {
        Event e;
        e.kind = EventKind::kBuffer;
        e.offset = op_offset_;
        e.opcode = op_;
        e.detail = "out-of-band buffer (pickle.loads without buffers= fails here)";
        Emit(std::move(e));
        Push(NewValue(VK::kBuffer));
        return false;
      }
      case kReadonlyBuffer:
        Top();
        return false;
      // ---- containers
      case kEmptyTuple:
      case kTuple1:
      case kTuple2:
      case kTuple3: {
        std::size_t n = op_ == kEmptyTuple ? 0 : op_ - kTuple1 + 1;
        if (stack_.size() < n) Underflow();
        Push(PopTuple(stack_.size() - n));
        return false;
      }
      case kTuple: {
        std::size_t m = Marker();
        Push(PopTuple(m));
        return false;
      }
      case kEmptyList:
        Push(NewContainer(VK::kList));
        return false;
      case kEmptyDict:
        Push(NewContainer(VK::kDict));
        return false;
      case kEmptySet:
        Push(NewContainer(VK::kSet));
        return false;
      case kList:
      case kFrozenSet: {
        std::size_t m = Marker();
        std::uint32_t t = PopTuple(m);
        values_[t].kind = op_ == kList ? VK::kList : VK::kFrozenSet;
        Push(t);
        return false;
      }
      case kDict: {
        std::size_t m = Marker();
        if ((stack_.size() - m) % 2 != 0) Corrupt("odd number of items for DICT");
        std::uint32_t t = PopTuple(m);
        values_[t].kind = VK::kDict;
        values_[t].count /= 2;
        Push(t);
        return false;
      }
      case kAppend: {
        if (stack_.size() < 1 || stack_.size() - 1 <= Fence()) Underflow();
        DoAppend(stack_.size() - 1);
        return false;
      }
      case kAppends:
        DoAppend(Marker());
        return false;
      case kSetItem: {
        if (stack_.size() < 2) Underflow();
        DoSetItems(stack_.size() - 2);
        return false;
      }
      case kSetItems:
        DoSetItems(Marker());
        return false;
      case kAddItems: {
        std::size_t m = Marker();
        if (m > stack_.size() || m <= Fence()) Underflow();
        if (m == stack_.size()) return false;
        std::uint32_t set = stack_[m - 1];
        if (values_[set].kind == VK::kSet) {
          for (std::size_t k = m; k < stack_.size(); ++k) AddItem(set, stack_[k]);
        } else {
          RequireObject(set, "add");
          for (std::size_t k = m; k < stack_.size(); ++k) EmitMethodCall(set, "add", stack_[k]);
        }
        stack_.resize(m);
        return false;
      }
      // ---- memo
      case kPut: {
        std::string_view line = ReadLine();
        if (line.size() + 1 < 2) Truncated();
        if (stack_.size() <= Fence()) Underflow();
        auto idx = ParseDecimal(line);
        if (!idx) Corrupt("invalid literal for int() with base 10 in PUT");
        if (*idx < 0) Corrupt("negative PUT argument");
        MemoPut(static_cast<std::uint64_t>(*idx));
        return false;
      }
      case kBinPut:
        MemoPut(ReadUint(1));
        return false;
      case kLongBinPut:
        MemoPut(ReadUint(4));
        return false;
      case kMemoize:
        MemoPut(memo_.size());
        return false;
      case kGet: {
        std::string_view line = ReadLine();
        if (line.size() + 1 < 2) Truncated();
        auto idx = ParseDecimal(line);
        if (!idx) Corrupt("invalid literal for int() with base 10 in GET");
        if (*idx < 0) Corrupt("Memo value not found at index " + std::to_string(*idx));
        MemoGet(static_cast<std::uint64_t>(*idx));
        return false;
      }
      case kBinGet:
        MemoGet(ReadUint(1));
        return false;
      case kLongBinGet:
        MemoGet(ReadUint(4));
        return false;
      // ---- imports
      case kGlobal: {
        std::string_view module = ReadLine();
        if (module.size() + 1 < 2) Truncated();
        if (!ValidUtf8(module, false)) Corrupt("GLOBAL module name is not valid UTF-8");
        std::string_view name = ReadLine();
        if (name.size() + 1 < 2) Truncated();
        if (!ValidUtf8(name, false)) Corrupt("GLOBAL name is not valid UTF-8");
        FindClass(std::string(module), std::string(name), false);
        return false;
      }
      case kStackGlobal: {
        std::uint32_t name = PopValue();
        std::uint32_t module = PopValue();
        bool str_ok = IsStr(name) && IsStr(module);
        if (!str_ok && !((IsStr(name) || Opaque(name)) && (IsStr(module) || Opaque(module)))) {
          Corrupt("STACK_GLOBAL requires str");
        }
        if (str_ok) {
          FindClass(std::string(StrOf(module)), std::string(StrOf(name)), false);
        } else {
          // Operands computed at load time (e.g. results of calls): the name is unknowable.
          FindClass(IsStr(module) ? std::string(StrOf(module)) : RefOf(module).Display(),
                    IsStr(name) ? std::string(StrOf(name)) : RefOf(name).Display(), true);
        }
        return false;
      }
      case kInst: {
        std::size_t m = Marker();
        std::string_view module = ReadLine();
        if (module.size() + 1 < 2) Truncated();
        for (char c : module) {
          if (static_cast<unsigned char>(c) >= 0x80) Corrupt("INST module name is not ASCII");
        }
        std::string_view name = ReadLine();
        if (name.size() + 1 < 2) Truncated();
        for (char c : name) {
          if (static_cast<unsigned char>(c) >= 0x80) Corrupt("INST class name is not ASCII");
        }
        std::uint32_t g = NewGlobal(std::string(module), std::string(name), false);
        EmitImport(g);
        std::uint32_t args = PopTuple(m);
        Push(EmitCall(g, args));
        return false;
      }
      case kExt1:
      case kExt2:
      case kExt4: {
        int w = op_ == kExt1 ? 1 : op_ == kExt2 ? 2 : 4;
        std::int64_t code = w == 4 ? static_cast<std::int32_t>(ReadUint(4))
                                   : static_cast<std::int64_t>(ReadUint(w));
        if (code <= 0) Corrupt("EXT specifies code <= 0");
        Event e;
        e.kind = EventKind::kExtension;
        e.offset = op_offset_;
        e.opcode = op_;
        e.detail = "extension code " + std::to_string(code) +
                   " (copyreg's registry is empty by default; a registered code imports "
                   "whatever global it names)";
        Emit(std::move(e));
        Push(NewValue(VK::kExt));
        return false;
      }
      // ---- calls
      case kReduce: {
        std::uint32_t args = PopValue();
        std::uint32_t callable = PopValue();
        RequireCallable(callable);
        if (values_[args].kind != VK::kTuple && !Opaque(args)) {
          Corrupt("argument list must be a tuple");
        }
        Push(EmitCall(callable, args));
        return false;
      }
      case kNewObj:
      case kNewObjEx: {
        std::uint32_t kwargs = op_ == kNewObjEx ? PopValue() : kNoValue;
        std::uint32_t args = PopValue();
        std::uint32_t cls = PopValue();
        if (!Opaque(cls)) Corrupt("NEWOBJ class argument must be a type");
        if (values_[args].kind != VK::kTuple && !Opaque(args)) {
          Corrupt("NEWOBJ args argument must be a tuple");
        }
        if (kwargs != kNoValue && values_[kwargs].kind != VK::kDict && !Opaque(kwargs)) {
          Corrupt("NEWOBJ_EX kwargs argument must be a dict");
        }
        Push(EmitCall(cls, args, kwargs != kNoValue ? " **" + Summary(kwargs) : std::string()));
        return false;
      }
      case kObj: {
        std::size_t m = Marker();
        if (stack_.size() < m + 1) Underflow();
        std::uint32_t args = PopTuple(m + 1);
        std::uint32_t cls = PopValue();
        RequireCallable(cls);
        Push(EmitCall(cls, args));
        return false;
      }
      case kBuild: {
        if (stack_.size() < 2 || stack_.size() - 2 < Fence()) Underflow();
        std::uint32_t state = PopValue();
        std::uint32_t inst = stack_.back();
        Event e;
        e.kind = EventKind::kBuild;
        e.offset = op_offset_;
        e.opcode = op_;
        e.ref = RefOf(inst);
        e.args = Summary(state);
        CollectBytes(state, e.byte_args);
        Emit(std::move(e));
        VK ik = values_[inst].kind;
        if (!Opaque(inst) && values_[state].kind != VK::kNone) {
          // Builtin values have no __setstate__ and no __dict__: CPython fails.
          Corrupt(std::string("cannot BUILD a ") + std::string(KindName(ik)));
        }
        if (IsDtypeObject(inst)) dtype_state_[inst] = state;
        if (IsJoblibWrapper(inst)) JoblibReadArray(inst, state);
        return false;
      }
      case kPersId: {
        std::string_view line = ReadLine();
        for (char c : line) {
          if (static_cast<unsigned char>(c) >= 0x80) {
            Corrupt("persistent IDs in protocol 0 must be ASCII strings");
          }
        }
        Event e;
        e.kind = EventKind::kPersistentId;
        e.offset = op_offset_;
        e.opcode = op_;
        e.detail = "'" + Printable(line) + "'";
        Emit(std::move(e));
        Push(NewValue(VK::kPersistent));
        return false;
      }
      case kBinPersId: {
        std::uint32_t pid = PopValue();
        Event e;
        e.kind = EventKind::kPersistentId;
        e.offset = op_offset_;
        e.opcode = op_;
        e.detail = Summary(pid);
        DescribeStorage(pid, e);
        CollectBytes(pid, e.byte_args);
        Emit(std::move(e));
        Push(NewValue(VK::kPersistent));
        return false;
      }
      default:
        Corrupt("invalid load key, '" + Hex2(op_) + "'");
    }
  }

  // PyTorch's persistent ids: ('storage', <storage type>, key, location, numel).
  void DescribeStorage(std::uint32_t pid, Event& e) {
    if (values_[pid].kind != VK::kTuple) return;
    const auto* items = Items(pid);
    if (items == nullptr || items->size() < 5 || !IsStr((*items)[0]) ||
        StrOf((*items)[0]) != "storage") {
      return;
    }
    if (const Ref* g = GlobalOf((*items)[1])) e.storage_type = g->qualname;
    if (IsStr((*items)[2])) e.storage_key = std::string(StrOf((*items)[2]));
    if (values_[(*items)[4]].kind == VK::kInt) e.storage_numel = values_[(*items)[4]].i;
  }

  void RequireCallable(std::uint32_t v) {
    if (!Opaque(v)) {
      Corrupt(std::string("'") + std::string(KindName(values_[v].kind)) +
              "' object is not callable");
    }
  }
  void RequireObject(std::uint32_t v, std::string_view method) {
    if (!Opaque(v)) {
      Corrupt(std::string("'") + std::string(KindName(values_[v].kind)) +
              "' object has no attribute '" + std::string(method) + "'");
    }
  }

  void DoAppend(std::size_t x) {
    std::size_t len = stack_.size();
    if (x > len || x <= Fence()) Underflow();
    if (len == x) return;
    std::uint32_t list = stack_[x - 1];
    if (values_[list].kind == VK::kList) {
      for (std::size_t k = x; k < len; ++k) AddItem(list, stack_[k]);
    } else if (values_[list].kind == VK::kByteArray) {
      // bytearray.extend(ints): no user code runs.
    } else {
      // list.extend()/append() looked up on an arbitrary object: a method call.
      RequireObject(list, "extend");
      std::uint32_t t = PopTuple(x);
      EmitMethodCall(list, "extend", t);
      len = x;
    }
    stack_.resize(x);
  }

  void DoSetItems(std::size_t x) {
    std::size_t len = stack_.size();
    if (x > len || x <= Fence()) Underflow();
    if (len == x) return;
    if ((len - x) % 2 != 0) Corrupt("odd number of items for SETITEMS");
    std::uint32_t dict = stack_[x - 1];
    VK k = values_[dict].kind;
    if (k == VK::kDict) {
      for (std::size_t i = x; i < len; ++i) AddItem(dict, stack_[i]);
    } else if (k == VK::kList) {
      // list.__setitem__ with integer keys: no user code runs.
    } else {
      RequireObject(dict, "__setitem__");
      for (std::size_t i = x; i + 1 < len; i += 2) {
        std::uint32_t pair = NewContainer(VK::kTuple);
        AddItem(pair, stack_[i]);
        AddItem(pair, stack_[i + 1]);
        EmitMethodCall(dict, "__setitem__", pair);
      }
    }
    stack_.resize(x);
  }

  void Summarize(std::uint32_t v) {
    ResultValue& r = out_.result;
    const Value& val = values_[v];
    switch (val.kind) {
      case VK::kNone:
        r.kind = ResultValue::Kind::kNone;
        break;
      case VK::kInt:
      case VK::kBool:
        r.kind = ResultValue::Kind::kInt;
        r.int_value = val.i;
        break;
      case VK::kBigInt:
        r.kind = ResultValue::Kind::kBigInt;
        r.big_int_le = std::string(AsSv(val.bytes));
        break;
      case VK::kStr:
        r.kind = ResultValue::Kind::kStr;
        break;
      case VK::kBytes:
        r.kind = ResultValue::Kind::kBytes;
        break;
      case VK::kDict:
        r.kind = ResultValue::Kind::kDict;
        break;
      case VK::kList:
      case VK::kTuple: {
        r.kind = val.kind == VK::kList ? ResultValue::Kind::kList : ResultValue::Kind::kTuple;
        const auto* items = Items(v);
        r.items_complete = items != nullptr && items->size() == val.count;
        if (items != nullptr) {
          for (std::uint32_t it : *items) {
            if (const Ref* g = GlobalOf(it))
              r.global_items.push_back(g->module + "." + g->qualname);
            if (!IsStr(it)) {
              r.items_complete = false;
              continue;
            }
            r.str_items.emplace_back(StrOf(it));
          }
        }
        break;
      }
      default:
        r.kind = ResultValue::Kind::kOther;
        break;
    }
  }

  std::span<const std::byte> data_;
  std::uint64_t pos_;
  const Limits& limits_;
  ParseResult& out_;
  int joblib_depth_;
  std::uint64_t op_offset_ = 0;
  std::uint8_t op_ = 0;
  std::uint64_t frame_end_ = 0;
  std::uint64_t decoded_ = 0;
  std::uint64_t tracked_items_ = 0;
  bool huge_memo_reported_ = false;
  int embedded_ = 0;
  ValueStore values_;
  std::vector<std::vector<std::uint32_t>> containers_;
  std::vector<Ref> globals_;
  std::vector<std::uint32_t> stack_;
  std::vector<std::size_t> marks_;
  std::unordered_map<std::uint64_t, std::uint32_t> memo_;
  std::uint64_t arg_nodes_left_ = kMaxArgNodesPerStream;  // Event::call_args nodes, all calls
  // numpy dtype objects given state by BUILD (dtype.__setstate__): value id -> state value id.
  std::unordered_map<std::uint32_t, std::uint32_t> dtype_state_;
};

}  // namespace

std::string Ref::Display() const {
  if (is_global) return module + "." + qualname;
  return origin.empty() ? "<object>" : "<" + origin + ">";
}

ParseResult Parse(std::span<const std::byte> data, std::uint64_t start, const Limits& limits) {
  ParseResult out;
  if (start > data.size()) start = data.size();
  Machine m(data, start, limits, out, 0);
  m.Run();
  return out;
}

bool LooksLikePickleStart(std::span<const std::byte> data, std::uint64_t offset) {
  if (offset >= data.size()) return false;
  auto b = [&](std::uint64_t k) { return static_cast<std::uint8_t>(data[offset + k]); };
  std::uint64_t left = data.size() - offset;
  if (b(0) == kProto) return left >= 2 && b(1) <= 5;
  switch (b(0)) {
    case kMark:
    case kEmptyList:
    case kEmptyDict:
    case kEmptyTuple:
    case kNone:
      return left >= 2;
    case kGlobal:
    case kInst:
    case kUnicode:
    case kInt:
    case kLong:
    case kString:
    case kPersId:
    case kFloat:
    case kGet: {
      // A text argument: printable up to a newline.
      for (std::uint64_t k = 1; k < left && k < 256; ++k) {
        std::uint8_t c = b(k);
        if (c == '\n') return k > 1;
        if (c < 0x20 || c >= 0x7f) return false;
      }
      return false;
    }
    default:
      return false;
  }
}

std::string OpcodeName(std::uint8_t op) {
  switch (op) {
    case kMark:
      return "MARK";
    case kStop:
      return "STOP";
    case kPop:
      return "POP";
    case kPopMark:
      return "POP_MARK";
    case kDup:
      return "DUP";
    case kFloat:
      return "FLOAT";
    case kInt:
      return "INT";
    case kBinInt:
      return "BININT";
    case kBinInt1:
      return "BININT1";
    case kLong:
      return "LONG";
    case kBinInt2:
      return "BININT2";
    case kNone:
      return "NONE";
    case kPersId:
      return "PERSID";
    case kBinPersId:
      return "BINPERSID";
    case kReduce:
      return "REDUCE";
    case kString:
      return "STRING";
    case kBinString:
      return "BINSTRING";
    case kShortBinString:
      return "SHORT_BINSTRING";
    case kUnicode:
      return "UNICODE";
    case kBinUnicode:
      return "BINUNICODE";
    case kAppend:
      return "APPEND";
    case kBuild:
      return "BUILD";
    case kGlobal:
      return "GLOBAL";
    case kDict:
      return "DICT";
    case kEmptyDict:
      return "EMPTY_DICT";
    case kAppends:
      return "APPENDS";
    case kGet:
      return "GET";
    case kBinGet:
      return "BINGET";
    case kInst:
      return "INST";
    case kLongBinGet:
      return "LONG_BINGET";
    case kList:
      return "LIST";
    case kEmptyList:
      return "EMPTY_LIST";
    case kObj:
      return "OBJ";
    case kPut:
      return "PUT";
    case kBinPut:
      return "BINPUT";
    case kLongBinPut:
      return "LONG_BINPUT";
    case kSetItem:
      return "SETITEM";
    case kTuple:
      return "TUPLE";
    case kEmptyTuple:
      return "EMPTY_TUPLE";
    case kSetItems:
      return "SETITEMS";
    case kBinFloat:
      return "BINFLOAT";
    case kProto:
      return "PROTO";
    case kNewObj:
      return "NEWOBJ";
    case kExt1:
      return "EXT1";
    case kExt2:
      return "EXT2";
    case kExt4:
      return "EXT4";
    case kTuple1:
      return "TUPLE1";
    case kTuple2:
      return "TUPLE2";
    case kTuple3:
      return "TUPLE3";
    case kNewTrue:
      return "NEWTRUE";
    case kNewFalse:
      return "NEWFALSE";
    case kLong1:
      return "LONG1";
    case kLong4:
      return "LONG4";
    case kBinBytes:
      return "BINBYTES";
    case kShortBinBytes:
      return "SHORT_BINBYTES";
    case kShortBinUnicode:
      return "SHORT_BINUNICODE";
    case kBinUnicode8:
      return "BINUNICODE8";
    case kBinBytes8:
      return "BINBYTES8";
    case kEmptySet:
      return "EMPTY_SET";
    case kAddItems:
      return "ADDITEMS";
    case kFrozenSet:
      return "FROZENSET";
    case kNewObjEx:
      return "NEWOBJ_EX";
    case kStackGlobal:
      return "STACK_GLOBAL";
    case kMemoize:
      return "MEMOIZE";
    case kFrame:
      return "FRAME";
    case kByteArray8:
      return "BYTEARRAY8";
    case kNextBuffer:
      return "NEXT_BUFFER";
    case kReadonlyBuffer:
      return "READONLY_BUFFER";
    default:
      return Hex2(op);
  }
}

}  // namespace airlock::formats::pickle
