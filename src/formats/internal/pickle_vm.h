// Private to formats/: the pickle VM behind pickle::Parse, split by concern over
//   pickle_opcodes.cc  the opcode table (names, which family executes each opcode)
//   pickle_vm.cc       reading, the dispatch loop and the stack/literal/container/memo opcodes
//   pickle_calls.cc    imports, calls, BUILD, persistent ids: the opcodes that record events
//   pickle_values.cc   the symbolic value store, call-argument descriptions, converters
//   pickle_text.cc     text-opcode argument decoding (escapes, decimals, hex, base64, UTF-8)
//   pickle_numpy.cc    joblib arrays and numpy dtypes (what a raw array's bytes hold)
//   pickle_modules.cc  Python 2 module names canonicalized to Python 3's
// See formats/pickle.h for the contract; nothing here is used outside src/formats.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "formats/pickle.h"

namespace airlock::formats::pickle::internal {

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

std::string Hex2(std::uint8_t c);  // "0x1f"
inline bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
inline int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}
void AppendUtf8(std::string& out, std::uint32_t cp);
// UTF-8 validation as CPython's decoder does it; `surrogatepass` admits U+D800..U+DFFF.
bool ValidUtf8(std::string_view s, bool surrogatepass);
inline std::string_view AsSv(std::span<const std::byte> b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}
// Printable ASCII with other bytes as \xNN, cut at `max` characters.
std::string Printable(std::string_view s, std::size_t max = 60);

// Which Machine::Step* function executes an opcode.
enum class OpFamily : std::uint8_t { kControl, kLiteral, kContainer, kMemo, kCall };

struct OpcodeInfo {
  Op op;
  std::string_view name;  // pickletools' name
  OpFamily family;
};

// The opcode's entry in the table, or nullptr for a byte no protocol (0-5) defines.
const OpcodeInfo* FindOpcode(std::uint8_t op);

// One pickle stream's emulation: Run() executes opcodes until STOP, an error or a limit, and
// fills the ParseResult given to the constructor.
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
  void CheckEmbedded(std::span<const std::byte> b, bool is_str);
  std::uint32_t NewInt(std::int64_t x, VK kind = VK::kInt) {
    std::uint32_t id = NewValue(kind);
    values_[id].i = x;
    return id;
  }
  std::uint32_t NewGlobal(std::string module, std::string qualname, bool computed);

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

  Ref RefOf(std::uint32_t id, int depth = 0) const;

  static std::string_view KindName(VK k);

  std::string Summary(std::uint32_t id, int depth = 0) const;

  // The structured view of a call argument (see Arg in pickle.h), within a node budget.
  Arg DescribeArg(std::uint32_t id, int depth, int& budget) const;

  // Bytes an argument carries: str/bytes literals and converter results.
  void CollectBytes(std::uint32_t id, std::vector<std::span<const std::byte>>& out,
                    int depth = 0) const;

  // codecs.encode(text, encoding[, errors]) is evaluated only for the Latin-1 codec that
  // torch's protocol 2 bytes use; other codecs (base64, zlib, rot13, utf-16...) transform the
  // text, so its bytes are then not known statically.
  enum class Codec { kLatin1, kUtf8, kOther };
  Codec EncodeCodec(std::uint32_t args) const;

  // Symbolic evaluation of the few pure converters that turn text into bytes, so a nested
  // pickle passed as codecs.encode(...) or BytesIO(...) can still be extracted.
  void CarryBytes(std::uint32_t result, std::uint32_t callee, std::uint32_t args);

 public:
  static bool DecodeHex(std::string_view s, std::string& out);
  static bool DecodeBase64(std::string_view s, std::string& out);

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
  std::uint32_t EmitCall(std::uint32_t callee, std::uint32_t args, std::string extra = {});
  // A method called on an object that is not a builtin container (APPEND/SETITEM/ADDITEMS).
  void EmitMethodCall(std::uint32_t obj, std::string_view method, std::uint32_t arg);

  // find_class: record the import and push the global.
  void FindClass(std::string module, std::string qualname, bool computed) {
    std::uint32_t g = NewGlobal(std::move(module), std::move(qualname), computed);
    EmitImport(g);
    Push(g);
  }

  // ---- text argument decoding ---------------------------------------------------------------
  // Python's bytes escape decoding used by STRING.
  std::string DecodeEscape(std::string_view s);

  // raw-unicode-escape decoding used by UNICODE: only \uXXXX and \UXXXXXXXX (after an odd run
  // of backslashes) are escapes; every other byte is Latin-1.
  std::string DecodeRawUnicodeEscape(std::string_view s);

  // PyLong_FromString(s, NULL, 10) on a C string (stops at an embedded NUL): optional
  // whitespace and sign, digits with single underscores between them, trailing whitespace.
  std::optional<std::int64_t> ParseDecimal(std::string_view line);

  // ---- memo ---------------------------------------------------------------------------------
  void MemoPut(std::uint64_t idx);
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
  static std::optional<std::uint64_t> DtypeItemSize(std::string_view d, bool* is_object);

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
  DtypeInfo DescribeDtype(std::uint32_t id, int depth) const;

  // [(name, format[, shape]), ...] as numpy.dtype() takes it.
  DtypeInfo DescribeFieldList(std::uint32_t list, int depth) const;

  // A field format: a typestr, a nested field list, or a dtype object.
  DtypeInfo DescribeFormat(std::uint32_t id, int depth) const;

  // An int or a tuple of ints (a sub-array shape): the element count.
  bool ShapeCount(std::uint32_t id, std::uint64_t* count) const;

  // dtype.__setstate__((version, endian, subarray, names, fields, elsize, alignment, flags[,
  // metadata])); versions below 3 have no flags and numpy recomputes them from the fields.
  bool ApplyDtypeState(std::uint32_t state, bool flexible, int depth, DtypeInfo& info) const;

  // joblib's NumpyUnpickler.load_build: after the wrapper's state is set, the array data is
  // read straight from the file: [1 padding-length byte + padding] + count * itemsize bytes,
  // or, for object arrays, one nested pickle.
  void JoblibReadArray(std::uint32_t wrapper, std::uint32_t state);

  // ---- the interpreter ----------------------------------------------------------------------
  void Loop();

  // Executes one opcode; true at STOP.
  bool Step();
  // STOP, PROTO, FRAME and the stack opcodes (MARK, POP, POP_MARK, DUP); true at STOP.
  bool StepControl();
  // Numbers, strings, bytes, None/True/False and out-of-band buffers.
  bool StepLiteral();
  // Tuples, lists, dicts and sets, and the opcodes that fill them.
  bool StepContainer();
  // PUT/GET and their binary forms, MEMOIZE.
  bool StepMemo();
  // Imports, calls, BUILD, extensions and persistent ids: every event the VM records.
  bool StepCall();

  // PyTorch's persistent ids: ('storage', <storage type>, key, location, numel).
  void DescribeStorage(std::uint32_t pid, Event& e);

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

  void DoAppend(std::size_t x);

  void DoSetItems(std::size_t x);

  void Summarize(std::uint32_t v);

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

}  // namespace airlock::formats::pickle::internal
