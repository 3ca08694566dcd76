// Python source files (*.py: auto_map remote code, helper scripts, archive members): read
// statically (scan/internal/python_source.h) and judged. Every .py file needs review (medium);
// what the code does raises that: a clear payload (a decoded payload executed, a process or native
// code together with network access, URLs or encoded blobs, shell command lines, writes outside
// the model folder) is malicious.
#include <string>

#include "core/file.h"
#include "scan/internal/python_source.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {

void AnalyzePython(Scanner& s, const Target& t) {
  s.Add(t, "code.python-source", Severity::kMedium,
        "Python source file: code shipped with a model runs with the loader's privileges "
        "(e.g. trust_remote_code) and needs review");
  PyAnalysis a = AnalyzePythonSource(core::AsStringView(t.data));
  if (a.truncated) {
    s.Incomplete(t, "python.limit", "Python source too large to analyse completely");
  }
  bool runs = false, reaches_out = false;
  for (const PySignal& sig : a.signals) {
    bool used = !sig.import_only;
    runs |= used && (sig.kind == PySignalKind::kProcess || sig.kind == PySignalKind::kNativeCode);
    reaches_out |= (used && sig.kind == PySignalKind::kNetwork) || sig.kind == PySignalKind::kUrl ||
                   sig.kind == PySignalKind::kEncodedBlob;
  }
  for (const PySignal& sig : a.signals) {
    Severity sev = Severity::kMedium;
    std::string rule = "python.";
    switch (sig.kind) {
      case PySignalKind::kDecodedPayload:
        sev = Severity::kCritical;
        rule += "decoded-payload";
        break;
      case PySignalKind::kShellCommand:
        sev = Severity::kHigh;
        rule += "shell-command";
        break;
      case PySignalKind::kWriteOutside:
        sev = Severity::kHigh;
        rule += "write-outside";
        break;
      case PySignalKind::kProcess:
        sev = sig.import_only ? Severity::kMedium : Severity::kHigh;
        rule += "process";
        break;
      case PySignalKind::kNativeCode:
        sev = sig.import_only ? Severity::kMedium : Severity::kHigh;
        rule += "native-code";
        break;
      case PySignalKind::kNetwork:
        rule += "network";
        break;
      case PySignalKind::kDynamicCode:
        rule += "dynamic-code";
        break;
      case PySignalKind::kEncodedBlob:
        rule += "encoded-blob";
        break;
      case PySignalKind::kUrl:
        rule += "url";
        break;
      case PySignalKind::kReflection:
        rule += "reflection";
        break;
      case PySignalKind::kNonAsciiName:
        rule += "non-ascii-identifier";
        break;
    }
    s.Add(t, rule, sev,
          std::string(PySignalName(sig.kind)) + ": " + sig.detail +
              (sig.import_only ? " (imported)" : ""),
          sig.offset);
  }
  if (runs && reaches_out) {
    s.Add(t, "python.payload", Severity::kCritical,
          "the code runs processes or native code and also reaches the network, a URL or an "
          "encoded blob: a download-and-execute payload");
  }
}

}  // namespace airlock::scan::internal
