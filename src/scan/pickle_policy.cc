// The pickle analyzer's policy tables (scan/internal/pickle_policy.h): the allow-list with the
// declared effect of every name on it, the deny-list that labels severity, the loaders whose byte
// arguments are unpickled, and the judgement of one imported global.
#include "scan/internal/pickle_policy.h"

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

namespace airlock::scan::internal {

namespace pk = formats::pickle;

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

namespace {

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

}  // namespace

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

namespace {

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

}  // namespace

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

}  // namespace airlock::scan::internal
