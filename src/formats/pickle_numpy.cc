// joblib's NumpyArrayWrapper and numpy dtypes: how many raw bytes follow a wrapper, and whether
// the dtype lets numpy read object pointers from them.
#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <utility>

#include "formats/internal/pickle_vm.h"

namespace airlock::formats::pickle::internal {

// Item size of a numpy dtype descr ('<f8', '|u1', 'U10', 'O'...); 0 for object; nullopt
// when unknown.
std::optional<std::uint64_t> Machine::DtypeItemSize(std::string_view d, bool* is_object) {
  *is_object = false;
  if (!d.empty() && (d[0] == '<' || d[0] == '>' || d[0] == '|' || d[0] == '=')) d.remove_prefix(1);
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

// dtype.hasobject and itemsize as numpy computes them for a dtype built in this stream: from
// its constructor argument (a typestr, or a list of (name, format[, shape]) fields) and from the
// state BUILD gave it (dtype.__setstate__: version, byte order, sub-array, names, fields,
// elsize, alignment, flags). numpy trusts the state's flags (NPY_ITEM_HASOBJECT = 1) and its
// fields, so any object field, object sub-array or object flag counts; anything not understood
// makes the dtype unknown.
Machine::DtypeInfo Machine::DescribeDtype(std::uint32_t id, int depth) const {
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
Machine::DtypeInfo Machine::DescribeFieldList(std::uint32_t list, int depth) const {
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
Machine::DtypeInfo Machine::DescribeFormat(std::uint32_t id, int depth) const {
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
bool Machine::ShapeCount(std::uint32_t id, std::uint64_t* count) const {
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
bool Machine::ApplyDtypeState(std::uint32_t state, bool flexible, int depth,
                              DtypeInfo& info) const {
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
void Machine::JoblibReadArray(std::uint32_t wrapper, std::uint32_t state) {
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

}  // namespace airlock::formats::pickle::internal
