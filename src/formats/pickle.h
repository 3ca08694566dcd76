// airlock::formats::pickle: a never-executing emulation of CPython's C unpickler (_pickle.c) for
// protocols 0-5. Values are modelled symbolically (strings, bytes, ints, containers, references
// to globals, results of calls); every import (GLOBAL, STACK_GLOBAL, INST, EXT*) and every call
// (REDUCE, NEWOBJ, NEWOBJ_EX, OBJ, INST, BUILD/__setstate__, APPEND/SETITEM on non-builtins) is
// recorded as an event with its byte offset at the moment CPython would perform it, so a later
// error never hides it. Nothing in the input is trusted: every read is bounds-checked, every
// size is checked against the bytes that exist, and work is capped by Limits.
// Ownership: a ParseResult owns its events and any decoded strings they point to; views into the
// input stay valid as long as the input does. Thread-safety: pure functions, no shared state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::formats::pickle {

struct Limits {
  std::uint64_t max_ops = 50'000'000;            // opcodes executed per stream
  std::uint64_t max_memo = 1'000'000;            // memo entries per stream
  std::uint64_t max_values = 4'000'000;          // symbolic values per stream (~64 B each)
  std::uint64_t max_stack = 1'000'000;           // stack depth plus marks
  std::uint64_t max_decoded_bytes = 256u << 20;  // text-opcode strings decoded into memory
  std::uint64_t max_events = 100'000;            // events kept per stream (more are counted)
  // When set, Event::call_args is filled only for calls of globals whose qualname it accepts
  // (the scanner asks only for callables it has declared effects for); unset: every call.
  std::function<bool(std::string_view qualname)> describe_args_of;
};

enum class EventKind {
  kImport,        // find_class(module, qualname)
  kCall,          // a callable invoked (REDUCE, NEWOBJ, OBJ, INST, ...)
  kBuild,         // BUILD: inst.__setstate__(state) or __dict__ update
  kPersistentId,  // PERSID/BINPERSID: persistent_load(pid)
  kExtension,     // EXT1/2/4: copyreg extension code (empty registry by default)
  kBuffer,        // NEXT_BUFFER: out-of-band buffer (needs buffers= from the caller)
  kAnomaly,       // frame violation, misplaced PROTO, huge memo index...
  kJoblibArray,   // joblib NumpyArrayWrapper raw array data skipped (offset, length)
  kEmbedded,      // a str/bytes literal that holds a pickle stream (raw, hex or base64);
                  // byte_args[0] is the decoded stream, detail says which encoding
};

// A description of the object being called or imported.
struct Ref {
  std::string module;      // canonical module for a global (aliases such as __builtin__ kept)
  std::string qualname;    // dotted qualname for a global
  bool is_global = false;  // false: the callee is the result of an earlier call, a persistent
                           // object, an extension object...
  bool computed = false;   // the STACK_GLOBAL operands were not literal strings
  std::string origin;      // for !is_global: "result of os.system", "persistent id", ...
  // For !is_global objects made by calling a global (REDUCE/NEWOBJ/OBJ/INST): that global.
  std::string root_module;
  std::string root_qualname;
  std::string Display() const;
};

// A shallow structured view of one positional call argument: enough for the analyzer to follow
// callables and byte strings that an allow-listed function passes on (a gadget chain such as
// _rebuild_from_type_v2(func, type, args, state) calling func(*args)). Depth and size are capped;
// a capped or unknown value is kObject ("not known statically").
struct Arg {
  enum class Kind {
    kData,      // None, bool, int, float, dict, set...: plain data, never called
    kStr,       // str literal (bytes: its UTF-8)
    kBytes,     // bytes/bytearray literal, or a converter result carrying known bytes
    kGlobal,    // an imported global (ref)
    kSequence,  // tuple or list (items)
    kObject,    // call result, persistent/extension object, buffer, or capped: unknown
  } kind = Kind::kObject;
  Ref ref;                           // kGlobal; kObject: origin and root of a call result
  std::span<const std::byte> bytes;  // kStr/kBytes
  std::vector<Arg> items;            // kSequence
  bool complete = true;              // kSequence: every item is described
};

struct Event {
  EventKind kind = EventKind::kImport;
  std::uint64_t offset = 0;  // absolute offset of the opcode in the input
  std::uint8_t opcode = 0;
  Ref ref;             // import: the global; call/build: the callable or object
  std::string args;    // call: short, printable summary of the arguments
  std::string detail;  // anomaly/persistent id/extension: what happened
  // Bytes and strings passed directly (or through bytes()/codecs.encode/BytesIO) as call
  // arguments; views into the input or into ParseResult::owned.
  std::vector<std::span<const std::byte>> byte_args;
  // kCall: the positional arguments, when they are a tuple known statically (args_known).
  std::vector<Arg> call_args;
  bool args_known = false;
  std::uint64_t length = 0;  // kJoblibArray: bytes skipped
  // kPersistentId for torch storages: ('storage', <type>, key, location, numel).
  std::string storage_type;  // e.g. "FloatStorage"
  std::string storage_key;
  std::optional<std::int64_t> storage_numel;
};

enum class ErrorKind { kNone, kCorrupt, kLimit, kUnsupported };

// A summary of the value STOP returned.
struct ResultValue {
  enum class Kind {
    kNone,
    kInt,
    kBigInt,
    kStr,
    kBytes,
    kList,
    kTuple,
    kDict,
    kOther
  } kind = Kind::kNone;
  std::int64_t int_value = 0;
  std::string big_int_le;                 // kBigInt: little-endian two's complement bytes
  std::vector<std::string> str_items;     // kList/kTuple: the str items, in order
  std::vector<std::string> global_items;  // kList/kTuple: "module.qualname" of global items
  bool items_complete = true;             // every item was a str and none were dropped
};

struct ParseResult {
  std::vector<Event> events;
  std::uint64_t events_dropped = 0;
  ErrorKind error = ErrorKind::kNone;
  std::string error_message;  // "pickle: <what> at offset N: <detail>"
  std::uint64_t error_offset = 0;
  std::uint64_t start = 0;  // where the stream began
  std::uint64_t end = 0;    // one past STOP (or where parsing stopped)
  std::uint64_t ops = 0;    // opcodes executed
  int protocol = 0;         // the last PROTO seen (0 if none)
  bool stopped = false;     // reached STOP
  ResultValue result;
  std::vector<std::unique_ptr<std::string>> owned;  // storage behind some byte_args

  bool ok() const { return error == ErrorKind::kNone && stopped; }
};

// Emulates one pickle.load() from `data` starting at `start` (up to and including STOP).
// Never fails: problems are reported in ParseResult::error with the events gathered so far.
// joblib's NumpyArrayWrapper objects are honoured the way joblib.load does: the raw array bytes
// that follow the wrapper's BUILD are skipped (object arrays: the nested pickle is emulated).
ParseResult Parse(std::span<const std::byte> data, std::uint64_t start, const Limits& limits);

// Maps the Python 2 module names that CPython's fix_imports rewrites (__builtin__, copy_reg,
// cPickle, httplib, ...) to their Python 3 names; other names are returned unchanged.
std::string CanonicalModule(std::string_view module);

// True when the bytes at `offset` plausibly begin a pickle stream (a PROTO opcode with a known
// protocol, or an opcode that a protocol 0/1 stream starts with followed by a valid argument).
bool LooksLikePickleStart(std::span<const std::byte> data, std::uint64_t offset);

// The opcode's pickletools name ("GLOBAL", "STACK_GLOBAL", ...), or "0x??" when unknown.
std::string OpcodeName(std::uint8_t opcode);

}  // namespace airlock::formats::pickle
