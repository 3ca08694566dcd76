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
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

namespace pk = formats::pickle;

namespace {

// ---- policy tables --------------------------------------------------------------------------

// The allow-list and the declared effect of every name on it: ONE table. An allow-listed
// global is only safe if nothing it does with its arguments can run code, so each entry says
// what the real function does with what it is given (read from torch/_utils.py,
// torch/_tensor.py, torch/storage.py, copyreg.py, numpy's _reconstruct and collections):
//   (no effect)        pure: builds a value from data; calls nothing it is given
//   kValue             a constant (dtype, layout...): calling it fails
//   kConvertsBytes     returns its argument's bytes transformed (the emulator tracks them)
//   kCallsArg n, m     calls argument n with the items of argument m as positional arguments
//   kInstantiatesArg n creates an instance of the type in argument n (runs its __new__,
//                      __init__, __setstate__ or __array_finalize__)
//   kDeserializesArg n unpickles / torch.loads the bytes in argument n
//   kStoresCallable n  keeps argument n and calls it later (defaultdict's default_factory)
// Whatever reaches a call or a loader through such an argument is judged like a direct call
// (PickleAnalysis::ApplyEffects); names outside this table are not allowed.
struct Effect {
  enum Kind {
    kValue,
    kConvertsBytes,
    kCallsArg,
    kInstantiatesArg,
    kDeserializesArg,
    kStoresCallable,
  } kind;
  int arg = 0;         // the argument called / instantiated / deserialized / stored
  int args_from = -1;  // kCallsArg: the argument whose items are the call's arguments
};
using Effects = std::vector<Effect>;

const std::unordered_map<std::string, Effects>& AllowList() {
  static const std::unordered_map<std::string, Effects> kAllow = [] {
    std::unordered_map<std::string, Effects> s = {
        {"collections.defaultdict", {{Effect::kStoresCallable, 0}}},
        {"builtins.bytearray", {{Effect::kConvertsBytes, 0}}},
        {"builtins.bytes", {{Effect::kConvertsBytes, 0}}},
        {"_codecs.encode", {{Effect::kConvertsBytes, 0}}},
        {"codecs.encode", {{Effect::kConvertsBytes, 0}}},
        // copyreg._reconstructor(cls, base, state): base.__new__(cls, state), base.__init__
        {"copyreg._reconstructor", {{Effect::kInstantiatesArg, 0}, {Effect::kInstantiatesArg, 1}}},
        // _rebuild_wrapper_subclass(cls, ...): Tensor._make_wrapper_subclass(cls, ...)
        {"torch._utils._rebuild_wrapper_subclass", {{Effect::kInstantiatesArg, 0}}},
        // _rebuild_from_type_v2(func, new_type, args, state): func(*args).as_subclass(new_type)
        {"torch._tensor._rebuild_from_type_v2",
         {{Effect::kCallsArg, 0, 2}, {Effect::kInstantiatesArg, 1}}},
        // _load_from_bytes(b): torch.load(io.BytesIO(b), weights_only=False)
        {"torch.storage._load_from_bytes", {{Effect::kDeserializesArg, 0}}},
        // _reconstruct(subtype, shape, dtype): ndarray.__new__(subtype, ...)
        {"numpy.core.multiarray._reconstruct", {{Effect::kInstantiatesArg, 0}}},
        {"numpy._core.multiarray._reconstruct", {{Effect::kInstantiatesArg, 0}}},
    };
    for (const char* pure : {
             "collections.OrderedDict",
             "collections.Counter",
             "builtins.set",
             "builtins.frozenset",
             "builtins.complex",
             "builtins.slice",
             "builtins.range",
             "builtins.list",
             "builtins.tuple",
             "builtins.dict",
             "builtins.int",
             "builtins.float",
             "builtins.bool",
             "builtins.str",
             "builtins.object",
             // torch (torch/_weights_only_unpickler.py _get_allowed_globals)
             "torch._utils._rebuild_tensor",
             "torch._utils._rebuild_tensor_v2",
             "torch._utils._rebuild_tensor_v3",
             "torch._utils._rebuild_parameter",
             "torch._utils._rebuild_parameter_with_state",
             "torch._utils._rebuild_qtensor",
             "torch._utils._rebuild_sparse_tensor",
             "torch._utils._rebuild_meta_tensor_no_storage",
             "torch._utils._rebuild_nested_tensor",
             "torch._utils._rebuild_device_tensor_from_numpy",
             "torch._utils._rebuild_device_tensor_from_cpu_tensor",
             "torch.nn.parameter.Parameter",
             "torch.Size",
             "torch.Tensor",
             "torch.device",
             "torch.serialization._get_layout",
             "torch.storage.UntypedStorage",
             "torch.storage.TypedStorage",
             "torch.UntypedStorage",
             "torch.TypedStorage",
             // numpy arrays and scalars
             "numpy.core.multiarray.scalar",
             "numpy._core.multiarray.scalar",
             "numpy.ndarray",
             "numpy.dtype",
             "numpy.core.numeric._frombuffer",
             "numpy._core.numeric._frombuffer",
             // joblib's array placeholder (its raw data is skipped by the emulator)
             "joblib.numpy_pickle.NumpyArrayWrapper",
             "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
         }) {
      s.emplace(pure, Effects{});
    }
    for (const char* value :
         {"torch.strided", "torch.sparse_coo", "torch.sparse_csr", "torch.sparse_csc",
          "torch.sparse_bsr", "torch.sparse_bsc", "torch._mkldnn", "torch.jagged",
          "torch.contiguous_format", "torch.channels_last", "torch.channels_last_3d",
          "torch.preserve_format", "torch.per_tensor_affine", "torch.per_channel_affine",
          "torch.per_tensor_symmetric", "torch.per_channel_symmetric",
          "torch.per_channel_affine_float_qparams"}) {
      s.emplace(value, Effects{{Effect::kValue, 0}});
    }

    for (const char* t :
         {"Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
          "ComplexFloat", "ComplexDouble", "QUInt8", "QInt8", "QInt32", "QUInt4x2", "QUInt2x4"}) {
      s.emplace(std::string("torch.") + t + "Storage", Effects{});
    }
    for (const char* t :
         {"Double", "Float", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool"}) {
      s.emplace(std::string("torch.") + t + "Tensor", Effects{});
      s.emplace(std::string("torch.cuda.") + t + "Tensor", Effects{});
    }
    for (const char* d : {"float32",
                          "float",
                          "float64",
                          "double",
                          "float16",
                          "half",
                          "bfloat16",
                          "complex32",
                          "chalf",
                          "complex64",
                          "cfloat",
                          "complex128",
                          "cdouble",
                          "uint8",
                          "uint16",
                          "uint32",
                          "uint64",
                          "int8",
                          "int16",
                          "short",
                          "int32",
                          "int",
                          "int64",
                          "long",
                          "bool",
                          "qint8",
                          "quint8",
                          "qint32",
                          "quint4x2",
                          "quint2x4",
                          "float8_e4m3fn",
                          "float8_e5m2",
                          "float8_e4m3fnuz",
                          "float8_e5m2fnuz",
                          "float8_e8m0fnu",
                          "float4_e2m1fn_x2",
                          "bits8",
                          "bits16",
                          "bits1x8",
                          "bits2x4",
                          "bits4x2"}) {
      s.emplace(std::string("torch.") + d, Effects{{Effect::kValue, 0}});
    }
    for (const char* t :
         {"Bool",       "Int8",        "UInt8",   "Int16",   "UInt16",     "Int32",
          "UInt32",     "Int64",       "UInt64",  "Long",    "ULong",      "LongLong",
          "ULongLong",  "Byte",        "UByte",   "Short",   "UShort",     "Int",
          "UInt",       "Float16",     "Float32", "Float64", "LongDouble", "Complex64",
          "Complex128", "CLongDouble", "Bytes",   "Str",     "Void",       "Object",
          "DateTime64", "TimeDelta64"}) {
      s.emplace(std::string("numpy.dtypes.") + t + "DType", Effects{});
    }
    for (const char* t :
         {"bool_", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
          "float16", "float32", "float64", "complex64", "complex128", "str_", "bytes_"}) {
      s.emplace(std::string("numpy.") + t, Effects{});
    }
    return s;
  }();
  return kAllow;
}

struct DenyRule {
  std::string_view module;
  std::string_view name;  // "" = every name in the module (and its submodules)
  Severity severity;
  bool strong;  // also matched when it appears as an attribute deeper in a dotted path
  std::string_view why;
};

constexpr Severity kCrit = Severity::kCritical;
constexpr Severity kHigh = Severity::kHigh;

// Known-dangerous names, from the research notes' bypass catalogue (picklescan/modelscan/
// fickling deny-lists and the GHSA fixtures). Only used to label severity: anything not on the
// allow-list is already not clean.
constexpr DenyRule kDeny[] = {
    {"os", "", kCrit, true, "operating-system access (os.system, os.popen, exec*)"},
    {"posix", "", kCrit, true, "operating-system access"},
    {"nt", "", kCrit, true, "operating-system access"},
    {"subprocess", "", kCrit, true, "runs processes"},
    {"_posixsubprocess", "", kCrit, true, "runs processes"},
    {"pty", "", kCrit, true, "spawns processes"},
    {"sys", "", kCrit, true, "interpreter internals (sys.modules overrides, exit)"},
    {"runpy", "", kCrit, true, "runs Python code"},
    {"code", "", kCrit, false, "runs Python code"},
    {"codeop", "", kCrit, false, "compiles Python code"},
    {"marshal", "", kCrit, true, "loads code objects"},
    {"types", "CodeType", kCrit, false, "builds code objects"},
    {"types", "FunctionType", kCrit, false, "builds functions from code objects"},
    {"types", "MethodType", kHigh, false, "binds arbitrary callables"},
    {"importlib", "", kCrit, true, "imports arbitrary modules"},
    {"imp", "", kCrit, false, "imports arbitrary modules"},
    {"zipimport", "", kCrit, false, "imports code from archives"},
    {"pkgutil", "", kCrit, true, "resolve_name imports any object (universal gadget)"},
    {"pydoc", "", kCrit, false, "pydoc.locate imports any object; pipepager runs commands"},
    {"inspect", "", kHigh, false, "reflection gadgets (getattr_static)"},
    {"pickle", "", kCrit, true, "nested unpickling"},
    {"_pickle", "", kCrit, true, "nested unpickling"},
    {"dill", "", kCrit, true, "dill rebuilds functions and code objects"},
    {"cloudpickle", "", kCrit, true, "cloudpickle rebuilds functions and code objects"},
    {"joblib", "", kCrit, false, "nested loading"},
    {"shelve", "", kHigh, false, "unpickles files"},
    {"pdb", "", kCrit, false, "debugger runs code"},
    {"bdb", "", kCrit, false, "debugger runs code"},
    {"timeit", "", kCrit, false, "timeit runs code strings"},
    {"trace", "", kCrit, false, "runs code"},
    {"cProfile", "", kCrit, false, "profiler runs code strings"},
    {"profile", "", kCrit, false, "profiler runs code strings"},
    {"doctest", "", kCrit, false, "runs code"},
    {"idlelib", "", kCrit, false, "IDLE internals run code"},
    {"lib2to3", "", kCrit, false, "loads pickled grammars / evaluates"},
    {"test", "", kCrit, false, "CPython test helpers run interpreters"},
    {"unittest", "", kHigh, false, "test runner"},
    {"ctypes", "", kCrit, true, "native code and memory access"},
    {"_ctypes", "", kCrit, true, "native code and memory access"},
    {"cffi", "", kCrit, false, "native code"},
    {"pip", "", kCrit, true, "installs packages"},
    {"ensurepip", "", kCrit, false, "installs packages"},
    {"venv", "", kCrit, false, "creates environments and runs pip"},
    {"distutils", "", kCrit, false, "writes files / runs compilers"},
    {"setuptools", "", kCrit, false, "runs build code"},
    {"uuid", "_get_command_stdout", kCrit, false, "runs commands"},
    {"uuid", "", kHigh, false, "uuid helpers run commands"},
    {"_osx_support", "", kCrit, false, "runs commands"},
    {"_aix_support", "", kCrit, false, "runs commands"},
    {"_pyrepl", "", kCrit, false, "pager runs commands"},
    {"platform", "", kHigh, false, "runs commands"},
    {"multiprocessing", "", kCrit, false, "spawns processes"},
    {"threading", "", kHigh, false, "starts threads running arbitrary targets"},
    {"_thread", "", kHigh, false, "starts threads running arbitrary targets"},
    {"signal", "", kHigh, false, "installs signal handlers"},
    {"atexit", "", kHigh, false, "registers exit hooks"},
    {"gc", "", kHigh, false, "reaches every live object"},
    {"site", "", kHigh, false, "interpreter configuration"},
    {"sysconfig", "", kHigh, false, "interpreter configuration"},
    {"builtins", "eval", kCrit, true, "evaluates code"},
    {"builtins", "exec", kCrit, true, "executes code"},
    {"builtins", "execfile", kCrit, true, "executes code"},
    {"builtins", "compile", kCrit, true, "compiles code"},
    {"builtins", "__import__", kCrit, true, "imports arbitrary modules"},
    {"builtins", "getattr", kCrit, true, "reaches arbitrary attributes"},
    {"builtins", "setattr", kCrit, true, "modifies arbitrary attributes"},
    {"builtins", "delattr", kCrit, true, "modifies arbitrary attributes"},
    {"builtins", "globals", kCrit, true, "reaches interpreter globals"},
    {"builtins", "locals", kCrit, true, "reaches interpreter locals"},
    {"builtins", "vars", kCrit, true, "reaches object namespaces"},
    {"builtins", "open", kCrit, true, "opens files"},
    {"builtins", "file", kCrit, true, "opens files"},
    {"builtins", "apply", kCrit, true, "calls arbitrary callables"},
    {"builtins", "breakpoint", kCrit, true, "starts a debugger"},
    {"builtins", "input", kHigh, true, "reads stdin"},
    {"builtins", "reload", kCrit, true, "re-imports modules"},
    {"builtins", "memoryview", kHigh, false, "raw memory views"},
    {"operator", "attrgetter", kCrit, false, "reaches arbitrary attributes"},
    {"operator", "itemgetter", kHigh, false, "gadget"},
    {"operator", "methodcaller", kCrit, false, "calls arbitrary methods"},
    {"_operator", "attrgetter", kCrit, false, "reaches arbitrary attributes"},
    {"_operator", "itemgetter", kHigh, false, "gadget"},
    {"_operator", "methodcaller", kCrit, false, "calls arbitrary methods"},
    {"functools", "partial", kCrit, false, "binds arbitrary callables (loader gadgets)"},
    {"functools", "partialmethod", kCrit, false, "binds arbitrary callables"},
    {"functools", "reduce", kHigh, false, "applies arbitrary callables"},
    {"socket", "", kHigh, true, "network access"},
    {"ssl", "", kHigh, false, "network access (DNS exfiltration)"},
    {"socketserver", "", kHigh, false, "network server"},
    {"http", "", kHigh, false, "network access"},
    {"httplib", "", kHigh, false, "network access"},
    {"urllib", "", kHigh, false, "network access"},
    {"urllib2", "", kHigh, false, "network access"},
    {"requests", "", kHigh, false, "network access"},
    {"aiohttp", "", kHigh, false, "network access"},
    {"asyncio", "", kCrit, false, "subprocess and network transports"},
    {"ftplib", "", kHigh, false, "network access"},
    {"smtplib", "", kHigh, false, "network access"},
    {"imaplib", "", kCrit, false, "IMAP4_stream runs commands"},
    {"poplib", "", kHigh, false, "network access"},
    {"telnetlib", "", kHigh, false, "network access"},
    {"nntplib", "", kHigh, false, "network access"},
    {"xmlrpc", "", kHigh, false, "network access"},
    {"webbrowser", "", kHigh, true, "opens URLs / runs browsers"},
    {"shutil", "", kHigh, true, "file-system changes"},
    {"tempfile", "", kHigh, false, "file-system changes"},
    {"fileinput", "", kHigh, false, "reads files"},
    {"linecache", "", kHigh, false, "reads files"},
    {"glob", "", kHigh, false, "file-system access"},
    {"io", "open", kCrit, false, "opens files"},
    {"io", "open_code", kCrit, false, "opens files"},
    {"io", "FileIO", kCrit, false, "opens files"},
    {"_io", "open", kCrit, false, "opens files"},
    {"_io", "FileIO", kCrit, false, "opens files"},
    {"logging", "FileHandler", kHigh, false, "writes files"},
    {"logging.handlers", "", kHigh, false, "writes files / network"},
    {"logging.config", "", kCrit, false, "logging.config.listen runs code"},
    {"numpy.f2py", "", kCrit, false, "evaluates code"},
    {"numpy.testing", "", kCrit, false, "runstring executes code"},
    {"numpy.distutils", "", kCrit, false, "runs build code"},
    {"numpy", "load", kCrit, false, "loads pickles"},
    {"numpy", "loads", kCrit, false, "loads pickles"},
    {"numpy.lib.npyio", "", kHigh, false, "loads files"},
    {"pandas", "read_pickle", kCrit, false, "loads pickles"},
    {"torch", "load", kCrit, false, "nested torch.load (weights_only=False)"},
    {"torch.serialization", "load", kCrit, false, "nested torch.load"},
    {"torch.hub", "", kCrit, false, "downloads and runs code"},
    {"torch.jit", "", kCrit, false, "TorchScript compilation/execution"},
    {"torch._dynamo", "", kCrit, false, "evaluates guard code"},
    {"torch._inductor", "", kCrit, false, "compiles and loads code"},
    {"torch.fx", "", kCrit, false, "evaluates generated code"},
    {"torch.package", "", kCrit, false, "imports packaged code"},
    {"torch.distributed", "", kHigh, false, "network and process control"},
    {"torch.utils.bottleneck", "", kCrit, false, "runs code under profilers"},
    {"torch.utils.collect_env", "", kCrit, false, "runs commands"},
    {"torch.utils.data.datapipes", "", kCrit, false, "decoders unpickle data"},
    {"torch.utils._config_module", "", kCrit, false, "load_config unpickles data"},
    {"torch.utils.cpp_extension", "", kCrit, false, "compiles and loads native code"},
    {"keras", "", kHigh, false, "model loading gadgets"},
    {"tensorflow", "", kHigh, false, "file and process access gadgets"},
    {"picklescan", "", kCrit, true, "tampers with security scanners"},
    {"modelscan", "", kCrit, true, "tampers with security scanners"},
    {"fickling", "", kCrit, true, "tampers with security scanners"},
    {"modelaudit", "", kCrit, true, "tampers with security scanners"},
};

// Callables whose bytes arguments are themselves deserialized (always scanned).
const std::unordered_set<std::string>& Loaders() {
  static const std::unordered_set<std::string> kLoaders = {
      "pickle.loads",
      "pickle.load",
      "pickle._loads",
      "pickle._load",
      "_pickle.loads",
      "_pickle.load",
      "dill.loads",
      "dill.load",
      "dill._dill.loads",
      "dill._dill.load",
      "cloudpickle.loads",
      "cloudpickle.load",
      "joblib.load",
      "numpy.load",
      "numpy.loads",
      "torch.load",
      "torch.serialization.load",
      "torch.storage._load_from_bytes",
      "torch.utils._config_module.ConfigModule.load_config",
      "pandas.read_pickle",
      "torch.utils.data.datapipes.utils.decoder.basichandlers",
      "marshal.loads",
  };
  return kLoaders;
}
bool IsLoader(const std::string& full) { return Loaders().count(full) != 0; }

// The last dotted component of every allow-listed name with effects and of every loader: the
// calls whose arguments the emulator describes structurally (a superset is harmless).
const std::unordered_set<std::string_view>& EffectfulQualnames() {
  static const std::unordered_set<std::string_view> kNames = [] {
    static std::vector<std::string> storage;
    std::unordered_set<std::string_view> names;
    auto add = [&](const std::string& full) {
      storage.push_back(full.substr(full.rfind('.') + 1));
    };
    for (const auto& [name, effects] : AllowList()) {
      if (!effects.empty()) add(name);
    }
    for (const std::string& loader : Loaders()) add(loader);
    for (const std::string& n : storage) names.insert(n);
    return names;
  }();
  return kNames;
}

std::vector<std::string> SplitDots(std::string_view s) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  while (parts.size() < 64) {
    std::size_t dot = s.find('.', start);
    parts.emplace_back(s.substr(start, dot == std::string_view::npos ? s.npos : dot - start));
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return parts;
}

bool IsDunder(std::string_view p) {
  return p.size() >= 4 && p.substr(0, 2) == "__" && p.substr(p.size() - 2) == "__";
}

struct Judgement {
  enum Kind { kAllowed, kUnknown, kDangerous } kind = kUnknown;
  Severity severity = Severity::kMedium;
  std::string why;
};

Judgement JudgeGlobal(const pk::Ref& ref) {
  Judgement j;
  if (ref.computed) {
    j.kind = Judgement::kDangerous;
    j.severity = Severity::kCritical;
    j.why =
        "its module or name is computed at load time (not a literal string), so the "
        "object imported cannot be known statically";
    return j;
  }
  std::string module = pk::CanonicalModule(ref.module);
  std::string full = module + "." + ref.qualname;
  if (!ref.module.empty() && !ref.qualname.empty() && AllowList().count(full)) {
    j.kind = Judgement::kAllowed;
    return j;
  }
  std::vector<std::string> parts = SplitDots(full);
  // Every (module, name) split of the dotted path, so a dangerous module reached as an
  // attribute (pathlib.os.system) or a dangerous function reached through a class
  // (bdb.Bdb.run) is judged like the direct import.
  const DenyRule* best = nullptr;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    for (std::size_t k = i + 1; k <= parts.size(); ++k) {
      std::string cand;
      for (std::size_t x = i; x < k; ++x) cand += (x > i ? "." : "") + parts[x];
      cand = pk::CanonicalModule(cand);
      std::string name = k < parts.size() ? parts[k] : "";
      for (const DenyRule& r : kDeny) {
        if (i > 0 && !r.strong) continue;
        bool module_match = cand == r.module || (r.name.empty() && cand.size() > r.module.size() &&
                                                 cand.compare(0, r.module.size(), r.module) == 0 &&
                                                 cand[r.module.size()] == '.');
        if (!module_match) continue;
        if (!r.name.empty() && name != r.name) continue;
        if (best == nullptr || r.severity > best->severity) best = &r;
      }
    }
  }
  if (best != nullptr) {
    j.kind = Judgement::kDangerous;
    j.severity = best->severity;
    j.why = std::string(best->why);
    return j;
  }
  for (const auto& p : SplitDots(ref.qualname)) {
    if (IsDunder(p)) {
      j.kind = Judgement::kDangerous;
      j.severity = Severity::kCritical;
      j.why = "the dotted name walks the dunder attribute '" + p +
              "' (introspection chains reach builtins, globals and subclasses)";
      return j;
    }
  }
  j.kind = Judgement::kUnknown;
  j.why = "not on the allow-list";
  return j;
}

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
