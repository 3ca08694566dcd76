// The pickle VM's reading, dispatch loop and the opcodes that only move values: control and
// framing, literals, containers, the memo (the opcodes that record events are in pickle_calls.cc).
#include "formats/internal/pickle_vm.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

namespace airlock::formats::pickle::internal {

void Machine::MemoPut(std::uint64_t idx) {
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

void Machine::Loop() {
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

// Executes one opcode; true at STOP. The opcode table (pickle_opcodes.cc) says which family
// handles it; a byte no protocol defines is an invalid load key, as in CPython.
bool Machine::Step() {
  const OpcodeInfo* info = FindOpcode(op_);
  if (info == nullptr) Corrupt("invalid load key, '" + Hex2(op_) + "'");
  switch (info->family) {
    case OpFamily::kControl:
      return StepControl();
    case OpFamily::kLiteral:
      return StepLiteral();
    case OpFamily::kContainer:
      return StepContainer();
    case OpFamily::kMemo:
      return StepMemo();
    case OpFamily::kCall:
      return StepCall();
  }
  Corrupt("invalid load key, '" + Hex2(op_) + "'");
}

// STOP, PROTO, FRAME and the stack opcodes (MARK, POP, POP_MARK, DUP); true at STOP.
bool Machine::StepControl() {
  switch (op_) {
    case kStop: {
      std::uint32_t v = PopValue();
      Summarize(v);
      out_.stopped = true;
      return true;
    }
    case kProto: {
      std::uint8_t p = static_cast<std::uint8_t>(Read(1)[0]);
      if (p > 5) Fail(ErrorKind::kUnsupported, "unsupported pickle protocol: " + std::to_string(p));
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
    default:
      // Unreachable: FindOpcode(op_) named this family.
      Corrupt("invalid load key, '" + Hex2(op_) + "'");
  }
}

// Numbers, strings, bytes, None/True/False and out-of-band buffers.
bool Machine::StepLiteral() {
  switch (op_) {
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
    default:
      // Unreachable: FindOpcode(op_) named this family.
      Corrupt("invalid load key, '" + Hex2(op_) + "'");
  }
}

// Tuples, lists, dicts and sets, and the opcodes that fill them.
bool Machine::StepContainer() {
  switch (op_) {
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
    default:
      // Unreachable: FindOpcode(op_) named this family.
      Corrupt("invalid load key, '" + Hex2(op_) + "'");
  }
}

// PUT/GET and their binary forms, MEMOIZE.
bool Machine::StepMemo() {
  switch (op_) {
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
    default:
      // Unreachable: FindOpcode(op_) named this family.
      Corrupt("invalid load key, '" + Hex2(op_) + "'");
  }
}

void Machine::DoAppend(std::size_t x) {
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

void Machine::DoSetItems(std::size_t x) {
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

}  // namespace airlock::formats::pickle::internal
