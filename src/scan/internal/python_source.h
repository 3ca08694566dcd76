// Internal to the scan module: static analysis of Python source shipped with a model (the
// modules a config.json `auto_map` makes transformers import under trust_remote_code). The text
// is hostile: it is tokenized the way CPython splits it (comments, string literals with their
// prefixes, triple quotes and escapes, names, line continuations) in one linear pass, never
// executed, and the work is capped (tokens, literal bytes examined). What the module would do
// when imported or called is reported as signals: process execution, network access, native
// code, dynamic code (exec/eval/compile/__import__), decoded payloads fed to it, URLs, shell
// commands in strings, writes outside the model folder, and identifiers that CPython's NFKC
// normalization could turn into other names. Thread-safety: pure function.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace airlock::scan::internal {

enum class PySignalKind {
  kProcess,      // os.system, subprocess.*, pty.spawn, os.exec*/spawn*/popen...
  kNetwork,      // socket, urllib.request, requests, http.client... (import or call)
  kNativeCode,   // ctypes / cffi / _ctypes
  kDynamicCode,  // exec, eval, compile, __import__, importlib.import_module, marshal/pickle.loads
  kDecodedPayload,  // dynamic code together with a decoder (base64, zlib, hex, codecs, marshal)
  kEncodedBlob,     // a long string literal of base64/hex text
  kUrl,             // a URL to a host outside the well-known model and code hubs
  kShellCommand,    // a shell command line in a string literal (curl|sh, rm -rf, /dev/tcp...)
  kWriteOutside,    // a file written, moved or deleted by an absolute, ~ or .. path
  kReflection,      // getattr/globals()/__builtins__/__subclasses__ tricks that hide names
  kNonAsciiName,    // an identifier with non-ASCII characters (NFKC folds them to ASCII names)
};

struct PySignal {
  PySignalKind kind;
  std::uint64_t offset = 0;  // byte offset of the construct in the source
  std::string detail;        // printable, short
  bool import_only = false;  // made by an import statement (the name is not used yet there)
};

struct PyAnalysis {
  std::vector<PySignal> signals;  // at most one per (kind, detail)
  std::vector<std::string> imports;
  bool truncated = false;  // a cap was hit: the rest of the text was not analysed
};

struct PyLimits {
  std::uint64_t max_tokens = 2'000'000;
  std::uint64_t max_signals = 256;
};

PyAnalysis AnalyzePythonSource(std::string_view source, const PyLimits& limits = {});

std::string_view PySignalName(PySignalKind k);

}  // namespace airlock::scan::internal
