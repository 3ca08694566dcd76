// Pickle analyzer: runs the formats::pickle emulator over every stream in the target (plain
// pickles, concatenated streams, legacy PyTorch files, joblib files) and judges what it would
// import and call. Policy, in order:
//   1. an exact (module, qualname) allow-list modelled on torch's weights-only unpickler and on
//      what NumPy arrays need: allowed;
//   2. dunder components, computed (non-literal) names, and known-dangerous names (matched on
//      every dotted component, so pathlib.os.system is os.system): high/critical, malicious;
//   3. anything else: medium "unknown import" (inconclusive: needs review, never clean).
// Byte strings passed to loader functions and pickles hidden in data literals are scanned as
// nested members through Scanner::ScanChild.
#include <algorithm>
#include <array>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/bytes.h"
#include "formats/pickle.h"
#include "scan/internal/pickle_policy.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

namespace pk = formats::pickle;

namespace {

// ---- the analysis of one target ---------------------------------------------------------------

// 0x1950A86A20F9469CFC6C, little-endian, as pickled by legacy torch.save.
constexpr std::array<unsigned char, 10> kTorchMagicLe = {0x6c, 0xfc, 0x9c, 0x46, 0xf9,
                                                         0x20, 0x6a, 0xa8, 0x50, 0x19};

std::optional<std::uint64_t> TorchElementSize(std::string_view storage_type) {
  static const std::pair<std::string_view, std::uint64_t> kSizes[] = {
      {"DoubleStorage", 8},   {"FloatStorage", 4},        {"HalfStorage", 2},
      {"BFloat16Storage", 2}, {"LongStorage", 8},         {"IntStorage", 4},
      {"ShortStorage", 2},    {"CharStorage", 1},         {"ByteStorage", 1},
      {"BoolStorage", 1},     {"ComplexFloatStorage", 8}, {"ComplexDoubleStorage", 16},
      {"QUInt8Storage", 1},   {"QInt8Storage", 1},        {"QInt32Storage", 4},
      {"QUInt4x2Storage", 1}, {"QUInt2x4Storage", 1},     {"UntypedStorage", 1},
  };
  for (const auto& [name, size] : kSizes) {
    if (storage_type == name) return size;
  }
  return std::nullopt;
}

class PickleAnalysis {
 public:
  PickleAnalysis(Scanner& s, const Target& t) : s_(s), t_(t) {
    limits_.max_ops = s.limits().max_pickle_ops;
    limits_.max_memo = s.limits().max_pickle_memo;
    // Structured arguments are only needed where an effect or a loader will look at them.
    limits_.describe_args_of = [](std::string_view qualname) {
      return EffectfulQualnames().count(qualname) != 0;
    };
  }

  void Run() {
    if (RunLegacyTarMember()) return;
    auto data = t_.data;
    std::uint64_t pos = 0;
    bool legacy = false;
    for (int stream = 0;; ++stream) {
      pk::ParseResult r = pk::Parse(data, pos, limits_);
      bool claims_pickle = data.size() >= 2 && static_cast<std::uint8_t>(data[0]) == 0x80 &&
                           static_cast<std::uint8_t>(data[1]) <= 5;
      if (stream == 0 && !claims_pickle && r.error == pk::ErrorKind::kCorrupt && r.ops <= 4 &&
          NoEffects(r)) {
        // CPython's unpickler rejects the stream within its first opcodes, before anything is
        // imported or called: loading this cannot run code.
        s_.Add(t_, "pickle.not-a-pickle", Severity::kInfo,
               "not a pickle stream: the unpickler rejects it at once (" + r.error_message +
                   "), before anything could be imported or called",
               0);
        return;
      }
      if (stream == 0) {
        legacy = r.result.kind == pk::ResultValue::Kind::kBigInt &&
                 r.result.big_int_le.size() == kTorchMagicLe.size() &&
                 std::equal(kTorchMagicLe.begin(), kTorchMagicLe.end(),
                            reinterpret_cast<const unsigned char*>(r.result.big_int_le.data()));
      }
      Judge(r, stream);
      if (legacy && stream == 3) {
        main_ = std::move(r.events);
        main_done_ = true;
      }
      if (r.error != pk::ErrorKind::kNone) {
        ReportError(r);
        return;
      }
      pos = r.end;
      if (legacy && stream == 4) {
        CheckLegacyStorages(r, pos);
        return;
      }
      if (pos >= data.size()) return;
      if (!pk::LooksLikePickleStart(data, pos)) {
        s_.Incomplete(t_, "pickle.trailing-data",
                      std::to_string(data.size() - pos) +
                          " bytes after the pickle's STOP opcode are not a pickle stream; a "
                          "loader reading them could interpret them differently",
                      pos);
        return;
      }
      if (stream == 0 && !legacy) {
        s_.Add(t_, "pickle.multiple-streams", Severity::kLow,
               "several pickle streams are concatenated; each one is scanned (pickle.load "
               "reads only the first, a loader calling it repeatedly reads them all)",
               pos);
      }
      if (stream >= 10'000) {
        s_.Incomplete(t_, "pickle.limit", "more than 10000 concatenated pickle streams", pos);
        return;
      }
    }
  }

 private:
  // Members of the legacy tar torch.save format (torch < 0.1.10), as torch's legacy_load reads
  // them: 'storages' = count pickle, then per storage a (key, location, type) pickle, an int64
  // element count and the raw elements, then a storage-views pickle; 'tensors' = count pickle,
  // then per tensor a (key, storage id, type) pickle, int32 ndim, 4 bytes, ndim int64 sizes,
  // ndim int64 strides and an int64 offset. False when the target is not such a member.
  bool RunLegacyTarMember() {
    std::string_view base = t_.name;
    if (auto slash = base.find_last_of('/'); slash != std::string_view::npos) {
      base.remove_prefix(slash + 1);
    }
    bool storages = base == "storages";
    if (!storages && base != "tensors") return false;
    auto data = t_.data;
    pk::ParseResult count = pk::Parse(data, 0, limits_);
    if (!count.ok() || count.result.kind != pk::ResultValue::Kind::kInt ||
        count.result.int_value < 0 || !count.events.empty()) {
      return false;
    }
    std::uint64_t pos = count.end;
    auto fail = [&](const std::string& what) {
      s_.Incomplete(t_, "pickle.legacy-storage",
                    "legacy tar PyTorch member '" + std::string(base) + "': " + what, pos);
      return true;
    };
    auto read_u64 = [&](std::uint64_t* v) {
      if (data.size() - pos < 8) return false;
      *v = 0;
      for (int k = 7; k >= 0; --k) *v = (*v << 8) | static_cast<std::uint8_t>(data[pos + k]);
      pos += 8;
      return true;
    };
    for (std::int64_t i = 0; i < count.result.int_value; ++i) {
      if (pos >= data.size()) return fail("fewer records than its count says");
      pk::ParseResult rec = pk::Parse(data, pos, limits_);
      Judge(rec, static_cast<int>(i + 1));
      if (rec.error != pk::ErrorKind::kNone) {
        ReportError(rec);
        return true;
      }
      pos = rec.end;
      if (storages) {
        std::optional<std::uint64_t> elsize;
        if (rec.result.global_items.size() == 1) {
          std::string_view type = rec.result.global_items[0];
          if (type.starts_with("torch.")) elsize = TorchElementSize(type.substr(6));
        }
        std::uint64_t numel = 0;
        std::uint64_t bytes = 0;
        if (!elsize) return fail("a storage record without a known storage type");
        if (!read_u64(&numel) || !core::CheckedMul(numel, *elsize, &bytes) ||
            bytes > data.size() - pos) {
          return fail("a storage larger than the member");
        }
        pos += bytes;
      } else {
        if (data.size() - pos < 8) return fail("a truncated tensor record");
        std::uint32_t ndim = 0;
        for (int k = 3; k >= 0; --k) ndim = (ndim << 8) | static_cast<std::uint8_t>(data[pos + k]);
        pos += 8;
        std::uint64_t need = 16ull * ndim + 8;
        if (ndim > 1024 || need > data.size() - pos) return fail("a malformed tensor record");
        pos += need;
      }
    }
    if (storages) {
      pk::ParseResult views = pk::Parse(data, pos, limits_);
      Judge(views, -1);
      if (views.error != pk::ErrorKind::kNone) {
        ReportError(views);
        return true;
      }
      pos = views.end;
    }
    if (pos != data.size()) {
      s_.Incomplete(t_, "pickle.trailing-data",
                    std::to_string(data.size() - pos) + " unexplained bytes after the last record",
                    pos);
    }
    return true;
  }

  static bool NoEffects(const pk::ParseResult& r) {
    for (const auto& e : r.events) {
      if (e.kind != pk::EventKind::kPersistentId && e.kind != pk::EventKind::kAnomaly) return false;
      if (!e.byte_args.empty() || !e.storage_type.empty()) return false;
    }
    return true;
  }

  void Finding(const std::string& key, std::string rule, Severity sev, std::string message,
               std::uint64_t offset) {
    if (!reported_.insert(key).second) return;
    s_.Add(t_, std::move(rule), sev, std::move(message), offset);
  }

  void Judge(pk::ParseResult& r, int stream) {
    (void)stream;
    // Views into r.owned die with r: never deduplicate across streams by address.
    scanned_.clear();
    // Bytes consumed by a loader call are scanned as that call's argument, not reported as a
    // pickle hidden in data (torch.storage._load_from_bytes carries raw torch.save output).
    std::set<const std::byte*> loader_args;
    for (const pk::Event& e : r.events) {
      if (e.kind == pk::EventKind::kCall && e.ref.is_global &&
          IsLoader(pk::CanonicalModule(e.ref.module) + "." + e.ref.qualname)) {
        for (auto b : e.byte_args) loader_args.insert(b.data());
      }
    }
    for (pk::Event& e : r.events) {
      if (e.kind == pk::EventKind::kEmbedded && !e.byte_args.empty() &&
          loader_args.count(e.byte_args[0].data())) {
        continue;
      }
      switch (e.kind) {
        case pk::EventKind::kImport:
          JudgeImport(e);
          break;
        case pk::EventKind::kCall:
          JudgeCall(e);
          break;
        case pk::EventKind::kBuild:
          JudgeBuild(e);
          break;
        case pk::EventKind::kPersistentId:
          if (e.storage_type.empty()) {
            Finding("persid:" + e.detail, "pickle.persistent-id", Severity::kMedium,
                    "persistent id " + e.detail +
                        " is not a PyTorch storage reference: what it loads depends on the "
                        "loader's persistent_load",
                    e.offset);
          } else if (!e.storage_key.empty() && !TorchElementSize(e.storage_type)) {
            Finding("storage:" + e.storage_type, "pickle.persistent-id", Severity::kMedium,
                    "PyTorch storage of unknown type '" + e.storage_type + "'", e.offset);
          } else {
            CheckStorageSize(e);
          }
          break;
        case pk::EventKind::kExtension:
          Finding("ext:" + e.detail, "pickle.extension-code", Severity::kMedium,
                  "EXT opcode: " + e.detail + "; the imported object cannot be known statically",
                  e.offset);
          break;
        case pk::EventKind::kBuffer:
          Finding("buffer", "pickle.out-of-band-buffer", Severity::kMedium,
                  "NEXT_BUFFER: " + e.detail + "; the buffer's content is not in this file",
                  e.offset);
          break;
        case pk::EventKind::kAnomaly:
          JudgeAnomaly(e);
          break;
        case pk::EventKind::kJoblibArray:
          break;
        case pk::EventKind::kEmbedded:
          ScanEmbedded(e);
          break;
      }
    }
    if (r.events_dropped > 0) {
      s_.Incomplete(t_, "pickle.limit",
                    std::to_string(r.events_dropped) + " more imports/calls were not analysed",
                    r.end);
    }
  }

  // torch.load builds each storage of numel x element-size bytes over the buffer of its record
  // data/<key> (PyTorchStreamReader::getRecord): a declared size larger than the record makes a
  // storage that reads and writes past its buffer.
  void CheckStorageSize(const pk::Event& e) {
    const Scanner::TorchRecords* records = s_.torch_records();
    if (records == nullptr || records->depth != t_.depth || e.storage_key.empty()) return;
    auto elsize = TorchElementSize(e.storage_type);
    auto it = records->sizes.find(e.storage_key);
    if (!elsize || it == records->sizes.end()) return;
    std::uint64_t bytes = 0;
    bool negative = !e.storage_numel || *e.storage_numel < 0;
    if (negative ||
        !core::CheckedMul(static_cast<std::uint64_t>(*e.storage_numel), *elsize, &bytes) ||
        bytes > it->second) {
      Finding("storage-size:" + e.storage_key, "pickle.storage-overflow", Severity::kHigh,
              "PyTorch storage '" + e.storage_key + "' declares " +
                  (e.storage_numel ? std::to_string(*e.storage_numel) : std::string("an unknown")) +
                  " elements of " + e.storage_type + " but its record holds " +
                  std::to_string(it->second) +
                  " bytes: torch builds a storage larger than its buffer (out-of-bounds memory "
                  "access)",
              e.offset);
    }
  }

  void JudgeImport(const pk::Event& e) {
    Judgement j = JudgeGlobal(e.ref);
    std::string name = e.ref.Display();
    std::string op = pk::OpcodeName(e.opcode);
    if (j.kind == Judgement::kAllowed) return;
    if (j.kind == Judgement::kDangerous) {
      Finding("import:" + name,
              e.ref.computed ? "pickle.computed-import" : "pickle.dangerous-import", j.severity,
              op + " imports " + name + ": " + j.why, e.offset);
      return;
    }
    Finding("import:" + name, "pickle.unknown-import", Severity::kMedium,
            op + " imports " + name +
                ", which is not on the allow-list of globals that model weights need; review "
                "what it does before loading this file",
            e.offset);
  }

  void ScanBytesArgs(const pk::Event& e, bool always) {
    for (auto b : e.byte_args) {
      if (b.empty()) continue;
      bool looks = (b.size() >= 2 && static_cast<std::uint8_t>(b[0]) == 0x80 &&
                    static_cast<std::uint8_t>(b[1]) <= 5) ||
                   (b.size() >= 4 && std::string_view(reinterpret_cast<const char*>(b.data()), 4) ==
                                         std::string_view("PK\x03\x04", 4));
      if (!always && !looks) continue;
      if (!scanned_.insert({b.data(), b.size()}).second) continue;
      s_.ScanChild(t_, b, "nested@" + std::to_string(e.offset) + ".pkl");
    }
  }

  // Bytes that a loader deserializes are analyzed as what that loader reads, whatever their
  // first byte (protocol 0 and 1 pickles have no header). torch/numpy/joblib/pandas loaders also
  // open zips, npy files and compressed files, recognised by their magic; marshal reads code
  // objects; everything else is a pickle.
  void ScanLoaderBytes(std::span<const std::byte> b, const std::string& loader,
                       std::uint64_t offset) {
    if (b.empty()) return;  // an empty stream fails at once (EOFError)
    if (!scanned_.insert({b.data(), b.size()}).second) return;
    std::string name = "nested@" + std::to_string(offset) + ".pkl";
    bool opens_files = loader.starts_with("torch.") || loader.starts_with("numpy.") ||
                       loader.starts_with("joblib.") || loader.starts_with("pandas.");
    Format f = DetectFormat(b, name);
    bool file_format = f == Format::kZip || f == Format::kNpy || f == Format::kGzip ||
                       f == Format::kXz || f == Format::kBzip2;
    if ((opens_files && file_format) || loader.starts_with("marshal.")) {
      s_.ScanChild(t_, b, name);
      return;
    }
    s_.ScanChildAsPickle(t_, b, name);
  }

  static const pk::Arg* ArgAt(const std::vector<pk::Arg>& args, int n) {
    return n >= 0 && static_cast<std::size_t>(n) < args.size() ? &args[n] : nullptr;
  }

  static bool IsPure(const Effects& effects) {
    return std::all_of(effects.begin(), effects.end(), [](const Effect& fx) {
      return fx.kind == Effect::kValue || fx.kind == Effect::kConvertsBytes;
    });
  }

  // Applies the declared effects of the allow-listed `callee` to its arguments. `depth` 0 is a
  // call the pickle makes itself (its loader behaviour is judged by JudgeCall); deeper calls are
  // made by an allow-listed function on the pickle's behalf.
  void ApplyEffects(const std::string& callee, const Effects& effects,
                    const std::vector<pk::Arg>& args, bool args_known, const pk::Event& e,
                    int depth) {
    std::string at = std::to_string(e.offset);
    for (const Effect& fx : effects) {
      const pk::Arg* a = ArgAt(args, fx.arg);
      // Too few arguments known to be there: the call fails (TypeError) before doing anything.
      bool missing = a == nullptr && args_known;
      if (missing || fx.kind == Effect::kValue || fx.kind == Effect::kConvertsBytes) continue;
      if (a == nullptr) {
        Finding(
            "args:" + at + ":" + callee, "pickle.indirect-call", Severity::kMedium,
            callee + " is called with arguments that are not known statically, and it " +
                (fx.kind == Effect::kDeserializesArg ? "deserializes" : "calls or instantiates") +
                " one of them",
            e.offset);
        continue;
      }
      switch (fx.kind) {
        case Effect::kCallsArg: {
          const pk::Arg* call_args = ArgAt(args, fx.args_from);
          static const std::vector<pk::Arg> kNone;
          bool known = call_args != nullptr && call_args->kind == pk::Arg::Kind::kSequence &&
                       call_args->complete;
          ReachCall(*a, known ? call_args->items : kNone, known, callee, e, depth + 1);
          break;
        }
        case Effect::kInstantiatesArg:
        case Effect::kStoresCallable: {
          const char* role = fx.kind == Effect::kInstantiatesArg
                                 ? "as the type it instantiates"
                                 : "as a callable it keeps and calls later";
          if (a->kind == pk::Arg::Kind::kGlobal) {
            if (JudgeGlobal(a->ref).kind != Judgement::kAllowed) break;  // import reported
            std::string full = pk::CanonicalModule(a->ref.module) + "." + a->ref.qualname;
            if (IsPure(AllowList().at(full))) break;
            Finding("gadget:" + at + ":" + full, "pickle.gadget-call", Severity::kMedium,
                    callee + " receives " + full + " " + role + "; " + full +
                        " calls or deserializes its own arguments, so the allow-list does not "
                        "vouch for this use",
                    e.offset);
          } else if (a->kind == pk::Arg::Kind::kObject) {
            Finding("gadget:" + at + ":" + callee, "pickle.indirect-call", Severity::kMedium,
                    callee + " receives " + a->ref.Display() + " " + role +
                        ", an object that is not known statically",
                    e.offset);
          }
          break;
        }
        case Effect::kDeserializesArg:
          if (depth == 0) break;  // a direct loader call: JudgeCall handles its bytes
          if (a->kind == pk::Arg::Kind::kBytes || a->kind == pk::Arg::Kind::kStr) {
            ScanLoaderBytes(a->bytes, callee, e.offset);
          } else if (a->kind == pk::Arg::Kind::kObject || a->kind == pk::Arg::Kind::kSequence) {
            Finding("loader-arg:" + at + ":" + callee, "pickle.nested-pickle", Severity::kMedium,
                    "the argument that " + callee +
                        " deserializes is not a byte string known statically, so what it "
                        "loads could not be scanned",
                    e.offset);
          }
          break;
        default:
          break;
      }
    }
  }

  // An allow-listed function (`caller`) calls `f` with `args`: judged like a call the pickle
  // makes itself, so a loader or a non-allowed callable reached this way is reported.
  void ReachCall(const pk::Arg& f, const std::vector<pk::Arg>& args, bool args_known,
                 const std::string& caller, const pk::Event& e, int depth) {
    std::string at = std::to_string(e.offset);
    if (depth > 8) {
      s_.Incomplete(t_, "pickle.limit",
                    "allow-listed functions call each other more than 8 levels deep", e.offset);
      return;
    }
    if (f.kind == pk::Arg::Kind::kObject) {
      Finding("gadget:" + at + ":" + caller, "pickle.indirect-call", Severity::kMedium,
              caller + " calls " + f.ref.Display() +
                  ", an object that is not known statically, when this file is loaded",
              e.offset);
      return;
    }
    if (f.kind != pk::Arg::Kind::kGlobal) return;  // not callable: TypeError at load time
    std::string full = pk::CanonicalModule(f.ref.module) + "." + f.ref.qualname;
    Judgement j = JudgeGlobal(f.ref);
    bool loader = IsLoader(full);
    if (j.kind == Judgement::kAllowed) {
      const Effects& effects = AllowList().at(full);
      if (loader) {
        Finding("gadget:" + at + ":" + full, "pickle.gadget-call", Severity::kHigh,
                caller + " calls " + full +
                    " on this file's behalf, which deserializes its argument when the file is "
                    "loaded; it is scanned as a nested pickle",
                e.offset);
      }
      ApplyEffects(full, effects, args, args_known, e, depth);
      return;
    }
    Severity sev = j.kind == Judgement::kDangerous ? j.severity : Severity::kMedium;
    Finding("gadget:" + at + ":" + full, "pickle.gadget-call", sev,
            caller + " calls " + full + " on this file's behalf when it is loaded" +
                (loader ? " (a loader: its argument is scanned as a nested pickle)" : ""),
            e.offset);
    if (loader) ApplyEffects(full, {{Effect::kDeserializesArg, 0}}, args, args_known, e, depth);
  }

  void JudgeCall(const pk::Event& e) {
    if (e.ref.is_global) {
      std::string full = pk::CanonicalModule(e.ref.module) + "." + e.ref.qualname;
      bool loader = IsLoader(full);
      if (loader && e.byte_args.empty()) {
        Finding("loader:" + std::to_string(e.offset), "pickle.nested-pickle", Severity::kMedium,
                "the argument of the loader " + full +
                    " is not a byte string known statically, so what it deserializes could "
                    "not be scanned",
                e.offset);
      }
      if (loader && !e.byte_args.empty()) {
        Finding("loader:" + std::to_string(e.offset), "pickle.nested-pickle",
                full == "torch.storage._load_from_bytes" ? Severity::kInfo : Severity::kHigh,
                "bytes passed to the loader " + full +
                    " are deserialized when this file is "
                    "loaded; they are scanned as a nested member",
                e.offset);
        for (auto b : e.byte_args) ScanLoaderBytes(b, full, e.offset);
      } else {
        ScanBytesArgs(e, false);
      }
      if (!e.ref.computed) {
        auto it = AllowList().find(full);
        if (it != AllowList().end() && !it->second.empty()) {
          ApplyEffects(full, it->second, e.call_args, e.args_known, e, 0);
        }
      }
      return;
    }
    // A method called on an object (APPEND/SETITEM on a non-list, or a call on a call result).
    std::string root = e.ref.root_module.empty()
                           ? std::string()
                           : pk::CanonicalModule(e.ref.root_module) + "." + e.ref.root_qualname;
    bool root_allowed = !root.empty() && AllowList().count(root) != 0;
    bool container_method = e.ref.origin.ends_with(".__setitem__") ||
                            e.ref.origin.ends_with(".extend") || e.ref.origin.ends_with(".add");
    ScanBytesArgs(e, false);
    if (root_allowed && container_method) return;
    if (!root.empty() && !root_allowed) return;  // the root import is already reported
    Finding("call:" + e.ref.Display(), "pickle.indirect-call", Severity::kMedium,
            pk::OpcodeName(e.opcode) + " calls " + e.ref.Display() +
                ", an object that is not an allow-listed global",
            e.offset);
  }

  void JudgeBuild(const pk::Event& e) {
    if (e.ref.is_global) {
      Finding("build:" + e.ref.Display(), "pickle.build-global", Severity::kHigh,
              "BUILD sets state on the module-level object " + e.ref.Display() +
                  " (monkey-patching the running program)",
              e.offset);
    } else if (e.ref.origin.starts_with("persistent") || e.ref.origin.starts_with("extension")) {
      // __setstate__ of an object the loader supplied: what runs depends on the loader.
      Finding("build:" + e.ref.origin, "pickle.indirect-call", Severity::kMedium,
              "BUILD calls __setstate__ on a " + e.ref.origin +
                  ", whose type is decided by the loader, not by this file",
              e.offset);
    }
  }

  void JudgeAnomaly(const pk::Event& e) {
    if (e.detail.find("FRAME length") != std::string::npos) {
      Finding("frame-short", "pickle.frame-violation", Severity::kMedium,
              "truncated frame: " + e.detail, e.offset);
    } else if (e.detail.find("FRAME") != std::string::npos) {
      Finding("frame", "pickle.frame-violation", Severity::kHigh,
              "frame boundary violation: " + e.detail, e.offset);
    } else if (e.detail.starts_with("numpy dtype state")) {
      Finding("dtype-flags", "pickle.dtype-mismatch", Severity::kHigh, e.detail, e.offset);
    } else if (e.detail.find("memo") != std::string::npos) {
      Finding("memo", "pickle.memo-abuse", Severity::kMedium, e.detail, e.offset);
    } else {
      Finding("anomaly:" + e.detail, "pickle.anomaly", Severity::kLow, e.detail, e.offset);
    }
  }

  void ScanEmbedded(const pk::Event& e) {
    if (e.byte_args.empty()) return;
    auto b = e.byte_args[0];
    // Only streams that really parse count: random data may start with 0x80 0x04.
    pk::Limits quick = limits_;
    pk::ParseResult inner = pk::Parse(b, 0, quick);
    if (inner.ops < 3) return;
    std::size_t effects = 0;
    for (const auto& ie : inner.events) {
      if (ie.kind == pk::EventKind::kImport || ie.kind == pk::EventKind::kCall ||
          ie.kind == pk::EventKind::kBuild || ie.kind == pk::EventKind::kEmbedded) {
        ++effects;
      }
    }
    bool encoded = e.detail != "raw";
    Severity sev = effects > 0 ? Severity::kHigh : Severity::kMedium;
    s_.Add(t_, "pickle.nested-pickle", sev,
           std::string("a ") + (encoded ? e.detail + "-encoded " : "") +
               "pickle stream is hidden in a data literal" +
               (effects > 0 ? " and it imports or calls code when unpickled" : "") +
               "; it is scanned as a nested member",
           e.offset);
    if (!scanned_.insert({b.data(), b.size()}).second) return;
    s_.ScanChild(t_, b, "nested@" + std::to_string(e.offset) + ".pkl");
  }

  void ReportError(const pk::ParseResult& r) {
    if (r.error == pk::ErrorKind::kLimit) {
      s_.Incomplete(t_, "pickle.limit", r.error_message, r.error_offset);
    } else if (r.error == pk::ErrorKind::kUnsupported) {
      s_.Incomplete(t_, "pickle.unsupported", r.error_message, r.error_offset);
    } else {
      s_.Incomplete(t_, "pickle.parse-error",
                    r.error_message +
                        " (everything before this point was analysed; a loader executes it "
                        "before failing)",
                    r.error_offset);
    }
  }

  // Legacy torch.save: after the storage-keys pickle come, for each key in that order, an
  // int64 element count and count * element-size raw bytes; then the file ends.
  void CheckLegacyStorages(const pk::ParseResult& keys_pickle, std::uint64_t pos) {
    const auto& result = keys_pickle.result;
    if (!main_done_ || result.kind != pk::ResultValue::Kind::kList || !result.items_complete) {
      s_.Incomplete(t_, "pickle.legacy-storage",
                    "legacy PyTorch file: the storage-keys pickle is not a list of strings", pos);
      return;
    }
    std::unordered_map<std::string, std::uint64_t> element_size;
    for (const auto& e : main_) {
      if (e.kind != pk::EventKind::kPersistentId || e.storage_key.empty()) continue;
      if (auto size = TorchElementSize(e.storage_type)) element_size[e.storage_key] = *size;
    }
    auto data = t_.data;
    for (const std::string& key : result.str_items) {
      auto it = element_size.find(key);
      if (it == element_size.end()) {
        s_.Incomplete(
            t_, "pickle.legacy-storage",
            "legacy PyTorch file: storage key '" + key + "' is not defined by the main pickle",
            pos);
        return;
      }
      std::uint64_t numel = 0;
      std::uint64_t bytes = 0;
      if (data.size() - pos < 8) {
        s_.Incomplete(t_, "pickle.legacy-storage",
                      "legacy PyTorch file: storage '" + key + "' is truncated", pos);
        return;
      }
      for (int k = 7; k >= 0; --k) numel = (numel << 8) | static_cast<std::uint8_t>(data[pos + k]);
      if (!core::CheckedMul(numel, it->second, &bytes) || bytes > data.size() - pos - 8) {
        s_.Incomplete(t_, "pickle.legacy-storage",
                      "legacy PyTorch file: storage '" + key + "' declares " +
                          std::to_string(numel) + " elements, more than the file holds",
                      pos);
        return;
      }
      pos += 8 + bytes;
    }
    if (pos != data.size()) {
      s_.Incomplete(t_, "pickle.trailing-data",
                    std::to_string(data.size() - pos) +
                        " bytes after the last storage of a legacy PyTorch file are unexplained",
                    pos);
    }
  }

  Scanner& s_;
  const Target& t_;
  pk::Limits limits_;
  std::set<std::string> reported_;
  std::set<std::pair<const std::byte*, std::size_t>> scanned_;
  std::vector<pk::Event> main_;
  bool main_done_ = false;
};

}  // namespace

void AnalyzePickle(Scanner& s, const Target& t) {
  PickleAnalysis analysis(s, t);
  analysis.Run();
}

}  // namespace airlock::scan::internal
