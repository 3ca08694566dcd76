// The VM's symbolic values: creating them, describing them for events (summaries, structured
// call arguments, carried bytes) and the stream's final value.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "formats/internal/pickle_vm.h"

namespace airlock::formats::pickle::internal {

// Literals that carry a pickle stream: raw bytes with a PROTO 2-5 header, or text that is
// the hex or base64 encoding of one.
void Machine::CheckEmbedded(std::span<const std::byte> b, bool is_str) {
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
  } else if (is_str && s.size() >= 16 && s[0] == '8' && s[1] == '0' && s[2] == '0' && s[3] >= '2' &&
             s[3] <= '5') {
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

std::uint32_t Machine::NewGlobal(std::string module, std::string qualname, bool computed) {
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

Ref Machine::RefOf(std::uint32_t id, int depth) const {
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

std::string_view Machine::KindName(VK k) {
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

std::string Machine::Summary(std::uint32_t id, int depth) const {
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
Arg Machine::DescribeArg(std::uint32_t id, int depth, int& budget) const {
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
void Machine::CollectBytes(std::uint32_t id, std::vector<std::span<const std::byte>>& out,
                           int depth) const {
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

Machine::Codec Machine::EncodeCodec(std::uint32_t args) const {
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
void Machine::CarryBytes(std::uint32_t result, std::uint32_t callee, std::uint32_t args) {
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
        out += static_cast<char>(((c & 0x1f) << 6) | (static_cast<unsigned char>(s[k + 1]) & 0x3f));
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

void Machine::Summarize(std::uint32_t v) {
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
          if (const Ref* g = GlobalOf(it)) r.global_items.push_back(g->module + "." + g->qualname);
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

}  // namespace airlock::formats::pickle::internal
