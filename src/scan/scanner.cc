#include "scan/internal/scanner.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "core/file.h"
#include "core/hash.h"
#include "core/progress.h"
#include "core/text.h"
#include "formats/pickle.h"

namespace airlock::scan {

std::string_view SeverityName(Severity s) {
  switch (s) {
    case Severity::kInfo:
      return "info";
    case Severity::kLow:
      return "low";
    case Severity::kMedium:
      return "medium";
    case Severity::kHigh:
      return "high";
    case Severity::kCritical:
      return "critical";
  }
  return "info";
}

std::optional<Severity> ParseSeverity(std::string_view name) {
  for (Severity s :
       {Severity::kInfo, Severity::kLow, Severity::kMedium, Severity::kHigh, Severity::kCritical}) {
    if (SeverityName(s) == name) return s;
  }
  return std::nullopt;
}

std::string_view VerdictName(Verdict v) {
  switch (v) {
    case Verdict::kClean:
      return "clean";
    case Verdict::kInconclusive:
      return "inconclusive";
    case Verdict::kMalicious:
      return "malicious";
  }
  return "inconclusive";
}

Verdict VerdictOf(const std::vector<Finding>& findings) {
  Verdict v = Verdict::kClean;
  for (const Finding& f : findings) {
    if (f.severity >= Severity::kHigh) return Verdict::kMalicious;
    // Medium findings (unknown imports, code needing review) and incomplete scans cannot be
    // called clean: fail closed.
    if (f.incomplete || f.severity == Severity::kMedium) v = Verdict::kInconclusive;
  }
  return v;
}

namespace internal {

std::string_view FormatName(Format f) {
  switch (f) {
    case Format::kUnknownBinary:
      return "unknown";
    case Format::kText:
      return "text";
    case Format::kEmpty:
      return "empty";
    case Format::kPickle:
      return "pickle";
    case Format::kZip:
      return "zip";
    case Format::kTar:
      return "tar";
    case Format::kGzip:
      return "gzip";
    case Format::kXz:
      return "xz";
    case Format::kBzip2:
      return "bzip2";
    case Format::kSevenZip:
      return "7z";
    case Format::kNpy:
      return "npy";
    case Format::kGguf:
      return "gguf";
    case Format::kSafetensors:
      return "safetensors";
    case Format::kJson:
      return "json";
    case Format::kJinja:
      return "jinja";
    case Format::kPythonSource:
      return "python";
    case Format::kExecutable:
      return "executable";
    case Format::kNotebook:
      return "notebook";
    case Format::kHdf5:
      return "hdf5";
    case Format::kImage:
      return "image";
    case Format::kYaml:
      return "yaml";
    case Format::kTfGraph:
      return "tensorflow";
  }
  return "unknown";
}

namespace {

bool StartsWith(std::span<const std::byte> d, std::string_view magic) {
  return d.size() >= magic.size() &&
         std::equal(magic.begin(), magic.end(), reinterpret_cast<const char*>(d.data()));
}

// True when the first bytes look like printable text (UTF-8 allowed, no NUL, few controls).
bool LooksLikeText(std::span<const std::byte> d) {
  std::size_t n = std::min<std::size_t>(d.size(), 8192);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(d[i]);
    if (c == 0) return false;
    if (c < 0x20 && c != '\n' && c != '\r' && c != '\t' && c != '\f') ++bad;
  }
  return bad * 100 <= n;
}

// Opcodes a protocol 0/1 pickle can start with.
bool IsPickleStartOpcode(unsigned char c) {
  switch (c) {
    case '(':
    case 'c':
    case ']':
    case '}':
    case ')':
    case 'I':
    case 'L':
    case 'F':
    case 'S':
    case 'V':
    case 'N':
    case 'l':
    case 'd':
    case 't':
    case 'i':
    case 'J':
    case 'K':
    case 'M':
    case 'U':
    case 'T':
    case 'X':
    case 'G':
    case 'q':
    case 'p':
    case 'g':
    case 'h':
      return true;
    default:
      return false;
  }
}

bool HasPickleName(std::string_view name) {
  for (std::string_view ext : {".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".joblib",
                               ".dill", ".data", ".dat", ".p", ".sav", ".model"}) {
    if (core::EndsWithIgnoreCase(name, ext)) return true;
  }
  return false;
}

// pickle.load, torch.load's legacy path and joblib never look at magic bytes: they run opcodes
// from the first byte. A prefix that is also valid opcodes ("GIF89a" is BINFLOAT + 8 bytes, a
// text line can be SHORT_BINBYTES) is consumed and the payload behind it runs. A small bounded
// emulation from offset 0 tells: kRuns when it reaches an import and then a call or STOP,
// kUndecided when it is still a valid stream as its limits run out. Ordinary text and binary
// formats fail within a few opcodes.
enum class PickleProbe { kNo, kRuns, kUndecided };
PickleProbe ProbeAsPickle(std::span<const std::byte> d) {
  formats::pickle::Limits limits;
  limits.max_ops = 10'000;
  limits.max_values = 10'000;
  limits.max_events = 64;
  limits.max_decoded_bytes = 1u << 20;
  auto r = formats::pickle::Parse(d, 0, limits);
  bool imports = false;
  bool calls = false;
  for (const auto& e : r.events) {
    if (e.kind == formats::pickle::EventKind::kImport) imports = true;
    if (e.kind == formats::pickle::EventKind::kCall) calls = true;
  }
  if (imports && (calls || r.stopped)) return PickleProbe::kRuns;
  return r.error == formats::pickle::ErrorKind::kLimit ? PickleProbe::kUndecided : PickleProbe::kNo;
}

}  // namespace

Format DetectFormat(std::span<const std::byte> d, std::string_view name) {
  if (d.empty()) return Format::kEmpty;
  auto b0 = static_cast<unsigned char>(d[0]);
  if (StartsWith(d, "GGUF")) return Format::kGguf;
  if (StartsWith(d, "PK\x03\x04") || StartsWith(d, "PK\x05\x06") || StartsWith(d, "PK\x07\x08"))
    return Format::kZip;
  if (StartsWith(d, "\x93NUMPY")) return Format::kNpy;
  if (StartsWith(d, "\x1f\x8b")) return Format::kGzip;
  if (StartsWith(d,
                 "\xfd"
                 "7zXZ"))
    return Format::kXz;
  if (StartsWith(d, "BZh")) return Format::kBzip2;
  if (StartsWith(d, "7z\xbc\xaf\x27\x1c")) return Format::kSevenZip;
  if (StartsWith(d, "\x89HDF\r\n\x1a\n")) return Format::kHdf5;
  if (StartsWith(d, "\x89PNG\r\n\x1a\n") || StartsWith(d, "\xff\xd8\xff") ||
      StartsWith(d, "GIF87a") || StartsWith(d, "GIF89a") ||
      (StartsWith(d, "RIFF") && d.size() >= 12 &&
       std::string_view(reinterpret_cast<const char*>(d.data()) + 8, 4) == "WEBP")) {
    // Python and Jinja pick their files by name and never look at an image header ("GIF89a = 0"
    // is a valid first line of Python): such names are analyzed as what their loader reads.
    if (core::EndsWithIgnoreCase(name, ".py")) return Format::kPythonSource;
    if (core::EndsWithIgnoreCase(name, ".jinja") || core::EndsWithIgnoreCase(name, ".jinja2") ||
        core::EndsWithIgnoreCase(name, ".j2"))
      return Format::kJinja;
    if (core::EndsWithIgnoreCase(name, ".ipynb")) return Format::kNotebook;
    return Format::kImage;
  }
  if (d.size() > 262 &&
      std::string_view(reinterpret_cast<const char*>(d.data()) + 257, 5) == "ustar")
    return Format::kTar;
  if (StartsWith(d,
                 "\x7f"
                 "ELF") ||
      StartsWith(d, "\xcf\xfa\xed\xfe") || StartsWith(d, "\xce\xfa\xed\xfe") ||
      StartsWith(d, "\xca\xfe\xba\xbe"))
    return Format::kExecutable;
  if (StartsWith(d, "MZ") && !HasPickleName(name)) return Format::kExecutable;
  // safetensors: 8-byte little-endian header length, then a JSON object.
  if (d.size() >= 10 && static_cast<char>(d[8]) == '{') {
    std::uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(d[i]);
    if (n >= 2 && n <= d.size() - 8) return Format::kSafetensors;
  }
  if (b0 == 0x80 && d.size() >= 2 && static_cast<unsigned char>(d[1]) <= 5) return Format::kPickle;
  if (core::EndsWithIgnoreCase(name, ".ipynb")) return Format::kNotebook;
  if (core::EndsWithIgnoreCase(name, ".pb")) return Format::kTfGraph;
  if (core::EndsWithIgnoreCase(name, ".py")) return Format::kPythonSource;
  if (StartsWith(d, "#!")) return Format::kExecutable;
  if (core::EndsWithIgnoreCase(name, ".jinja") || core::EndsWithIgnoreCase(name, ".jinja2") ||
      core::EndsWithIgnoreCase(name, ".j2"))
    return Format::kJinja;
  if (LooksLikeText(d)) {
    // Protocol 0 pickles are text; take them as pickles when named like one or shaped like one.
    auto last = static_cast<unsigned char>(d[d.size() - 1]);
    bool ends_with_stop = last == '.' || (d.size() >= 2 && last == '\n' &&
                                          static_cast<unsigned char>(d[d.size() - 2]) == '.');
    if (IsPickleStartOpcode(b0) &&
        (HasPickleName(name) || ends_with_stop || ProbeAsPickle(d) == PickleProbe::kRuns)) {
      return Format::kPickle;
    }
    if (core::EndsWithIgnoreCase(name, ".yaml") || core::EndsWithIgnoreCase(name, ".yml"))
      return Format::kYaml;
    if (core::EndsWithIgnoreCase(name, ".json") || b0 == '{' || b0 == '[') return Format::kJson;
    return Format::kText;
  }
  if (IsPickleStartOpcode(b0) || HasPickleName(name)) return Format::kPickle;
  return Format::kUnknownBinary;
}

void Scanner::Add(const Target& t, std::string rule_id, Severity severity, std::string message,
                  std::optional<std::uint64_t> offset) {
  Finding f;
  f.rule_id = std::move(rule_id);
  f.severity = severity;
  f.message = std::move(message);
  f.path = report_.path;
  f.member = t.member;
  f.offset = offset;
  if (t.text && offset && *offset <= t.data.size()) {
    const std::byte* begin = t.data.data();
    f.line = 1 + std::count(begin, begin + *offset, std::byte{'\n'});
  }
  report_.findings.push_back(std::move(f));
}

void Scanner::Incomplete(const Target& t, std::string rule_id, std::string message,
                         std::optional<std::uint64_t> offset, Severity severity) {
  Add(t, std::move(rule_id), severity, std::move(message), offset);
  report_.findings.back().incomplete = true;
}

void Scanner::SetFormat(std::string_view format) {
  if (report_.format.empty()) report_.format = std::string(format);
}

void Scanner::RefineFormat(std::string_view from, std::string_view to) {
  if (report_.format == from) report_.format = std::string(to);
}

bool Scanner::ChargeDecompressed(const Target& t, std::uint64_t bytes) {
  decompressed_ += bytes;
  if (decompressed_ > limits().max_decompressed_bytes) {
    Incomplete(t, "scan.limit.decompressed",
               "decompressed data exceeds the limit of " +
                   std::to_string(limits().max_decompressed_bytes) + " bytes (possible zip bomb)");
    return false;
  }
  return true;
}

std::optional<Target> Scanner::Child(const Target& parent, std::span<const std::byte> data,
                                     std::string_view member_name) {
  if (++members_seen_ > limits().max_members) {
    if (members_seen_ == limits().max_members + 1) {
      Incomplete(parent, "scan.limit.members",
                 "more than " + std::to_string(limits().max_members) + " archive members");
    }
    return std::nullopt;
  }
  if (parent.depth + 1 > limits().max_depth) {
    Incomplete(parent, "scan.limit.depth",
               "nesting deeper than " + std::to_string(limits().max_depth) + " levels");
    return std::nullopt;
  }
  Target child;
  child.data = data;
  child.name = std::string(member_name);
  child.depth = parent.depth + 1;
  child.member = parent.member.empty() ? std::string(member_name)
                                       : parent.member + "!/" + std::string(member_name);
  return child;
}

void Scanner::ScanChild(const Target& parent, std::span<const std::byte> data,
                        std::string_view member_name) {
  if (auto child = Child(parent, data, member_name)) Scan(*child);
}

void Scanner::ScanChildAsPickle(const Target& parent, std::span<const std::byte> data,
                                std::string_view member_name) {
  if (auto child = Child(parent, data, member_name)) AnalyzePickle(*this, *child);
}

// Zip readers (PyTorch's included) find an archive by its end-of-central-directory record at
// the end of the file, so bytes of any other format followed by a zip load as that zip.
bool HasTrailingZip(std::span<const std::byte> d) {
  constexpr std::size_t kEocdSize = 22;
  if (d.size() < kEocdSize) return false;
  std::size_t window = std::min<std::size_t>(d.size(), kEocdSize + 65535);
  std::size_t lowest = d.size() - window;
  for (std::size_t i = d.size() - kEocdSize + 1; i-- > lowest;) {
    if (static_cast<char>(d[i]) == 'P' && static_cast<char>(d[i + 1]) == 'K' &&
        static_cast<unsigned char>(d[i + 2]) == 5 && static_cast<unsigned char>(d[i + 3]) == 6)
      return true;
  }
  return false;
}

namespace {
bool IsLineOriented(Format f) {
  return f == Format::kText || f == Format::kJson || f == Format::kJinja ||
         f == Format::kPythonSource || f == Format::kNotebook || f == Format::kYaml;
}
}  // namespace

void Scanner::Scan(const Target& target) {
  Format f = DetectFormat(target.data, target.name);
  // Findings in text formats carry a line number (SARIF consumers show lines, not offsets).
  Target text_target;
  if (IsLineOriented(f) && !target.text) {
    text_target = target;
    text_target.text = true;
  }
  const Target& t = text_target.text ? text_target : target;
  if (t.depth == 0) SetFormat(FormatName(f));
  // Loaders pick a file by its name: a .gguf goes to llama.cpp, a .safetensors to the
  // safetensors reader, which never look for a zip. Anything else may reach torch.load. Checking
  // the tail of a correctly named GGUF/safetensors file is skipped so that their scans touch
  // headers only.
  bool named_for_format =
      (f == Format::kGguf && core::EndsWithIgnoreCase(t.name, ".gguf")) ||
      (f == Format::kSafetensors && core::EndsWithIgnoreCase(t.name, ".safetensors"));
  // Archives are walked member by member, so a zip stored as their last member is scanned anyway.
  bool archive = f == Format::kTar || f == Format::kGzip || f == Format::kXz ||
                 f == Format::kBzip2 || f == Format::kSevenZip;
  if (f != Format::kZip && f != Format::kEmpty && !named_for_format && !archive &&
      HasTrailingZip(t.data)) {
    Add(t, "zip.polyglot", Severity::kMedium,
        std::string("file is a ") + std::string(FormatName(f)) +
            " with a zip archive appended: zip readers such as torch.load open the zip part");
    AnalyzeZip(*this, t);
  }
  if (f != Format::kPickle && f != Format::kEmpty && ProbeAsPickle(t.data) != PickleProbe::kNo) {
    Add(t, "pickle.polyglot", Severity::kMedium,
        std::string("file is a ") + std::string(FormatName(f)) +
            " whose bytes a pickle loader (pickle.load, torch.load, joblib.load) also runs as a "
            "pickle");
    AnalyzePickle(*this, t);
  }
  switch (f) {
    case Format::kEmpty:
    case Format::kText:
    case Format::kImage:
      return;
    case Format::kPickle:
      AnalyzePickle(*this, t);
      return;
    case Format::kZip:
      AnalyzeZip(*this, t);
      return;
    case Format::kTar:
    case Format::kGzip:
    case Format::kXz:
    case Format::kBzip2:
    case Format::kSevenZip:
      AnalyzeArchive(*this, t, f);
      return;
    case Format::kNpy:
      AnalyzeNpy(*this, t);
      return;
    case Format::kYaml:
      AnalyzeYaml(*this, t);
      return;
    case Format::kGguf:
      AnalyzeGguf(*this, t);
      return;
    case Format::kSafetensors:
      AnalyzeSafetensors(*this, t);
      return;
    case Format::kJson:
      AnalyzeJson(*this, t);
      return;
    case Format::kJinja:
      AnalyzeTemplateSource(*this, t, core::AsStringView(t.data), 0);
      return;
    case Format::kHdf5:
      AnalyzeHdf5(*this, t);
      return;
    case Format::kTfGraph:
      AnalyzeTfGraph(*this, t);
      return;
    case Format::kPythonSource:
      AnalyzePython(*this, t);
      return;
    case Format::kNotebook:
      Add(t, "code.notebook", Severity::kMedium,
          "Jupyter notebook: contains code that needs review");
      return;
    case Format::kExecutable:
      Add(t, "code.executable", Severity::kHigh,
          "executable or script (ELF/PE/Mach-O/shebang) inside model files");
      return;
    case Format::kUnknownBinary:
      Incomplete(t, "scan.unknown-format",
                 "unrecognized binary format: content could not be vetted", 0, Severity::kLow);
      return;
  }
}

}  // namespace internal

FileReport ScanBuffer(std::span<const std::byte> data, std::string display_name,
                      const ScanOptions& options) {
  FileReport report;
  report.path = display_name;
  report.size = data.size();
  internal::Scanner scanner(report, options);
  internal::Target t;
  t.data = data;
  t.name = std::filesystem::path(display_name).filename().string();
  scanner.Scan(t);
  report.verdict = VerdictOf(report.findings);
  return report;
}

namespace {

FileReport ScanOneFile(const std::string& path, const ScanOptions& options) {
  auto mapped = core::MappedFile::Open(path);
  if (!mapped.has_value()) {
    FileReport r;
    r.path = path;
    r.format = "unreadable";
    Finding f;
    f.rule_id = "scan.read-error";
    f.severity = Severity::kMedium;
    f.message = mapped.error().message();
    f.path = path;
    f.incomplete = true;
    r.findings.push_back(std::move(f));
    r.verdict = Verdict::kInconclusive;
    return r;
  }
  mapped->AdviseSequential();
  FileReport r = ScanBuffer(mapped->bytes(), path, options);
  if (options.hash) r.sha256 = core::ToHex(core::Sha256Of(mapped->bytes()));
  return r;
}

}  // namespace

Result<ScanReport> ScanPaths(const std::vector<std::string>& paths, const ScanOptions& options) {
  namespace fs = std::filesystem;
  ScanReport report;
  for (const std::string& path : paths) {
    std::error_code ec;
    auto st = fs::symlink_status(path, ec);
    if (ec || !fs::exists(st)) return InvalidArgument("scan: no such file or folder: " + path);
    if (fs::is_directory(fs::status(path, ec))) {
      std::vector<std::string> rel;
      std::vector<std::string> files;
      // What could not be vetted: the folder's verdict is then at least inconclusive, never
      // clean (a loader given the folder reads what the scan did not).
      std::vector<Finding> unvetted;
      auto cannot_vet = [&](std::string rule_id, std::string message, std::string where) {
        Finding f;
        f.rule_id = std::move(rule_id);
        f.severity = Severity::kMedium;
        f.message = std::move(message);
        f.path = std::move(where);
        f.incomplete = true;
        unvetted.push_back(std::move(f));
      };
      // No skip_permission_denied: a subfolder the scan cannot read is a folder it did not vet.
      auto it = fs::recursive_directory_iterator(path, ec);
      if (ec) return IoError("scan: cannot list " + path + ": " + ec.message());
      for (; it != fs::recursive_directory_iterator(); it.increment(ec)) {
        // A failed step leaves the iterator unusable: stop, and say the listing is incomplete.
        if (ec) break;
        const auto& entry = *it;
        std::error_code entry_ec;  // one entry's status; the listing's own error stays in `ec`
        // Skip version-control metadata; everything else in a model folder is vetted.
        if (entry.is_directory(entry_ec) && entry.path().filename() == ".git") {
          it.disable_recursion_pending();
          continue;
        }
        // lexically: fs::relative would resolve a symlink to its target and hide its name.
        std::string name = entry.path().lexically_relative(path).string();
        const fs::file_status own = entry.symlink_status(entry_ec);
        if (entry_ec) {
          // Removed or unreadable while listed: not vetted.
          cannot_vet("scan.read-error", "cannot read its type: " + entry_ec.message(),
                     entry.path().string());
        } else if (fs::is_symlink(own) || fs::is_regular_file(own)) {
          rel.push_back(name);
          if (fs::is_regular_file(own)) files.push_back(entry.path().string());
        } else if (!fs::is_directory(own)) {
          // A FIFO, a socket or a device: there are no bytes to scan, and a loader opening it
          // reads whatever a writer feeds it (or hangs).
          cannot_vet("scan.special-file",
                     "not a regular file (a FIFO, socket or device): its contents cannot be "
                     "scanned, and a loader would read whatever is written into it",
                     entry.path().string());
        }
      }
      if (ec) {
        cannot_vet("scan.read-error",
                   "the folder could not be listed completely (" + ec.message() +
                       "): files after that point were not scanned",
                   path);
      }
      std::sort(rel.begin(), rel.end());
      std::sort(files.begin(), files.end());
      const std::size_t first_member = report.files.size();
      core::Progress progress("scanning " + path, files.size(), options.progress);
      std::uint64_t done = 0;
      for (const auto& f : files) {
        report.files.push_back(ScanOneFile(f, options));
        progress.Update(++done);
      }
      progress.Finish();
      FileReport folder;
      folder.path = path;
      folder.format = "model-folder";
      internal::AnalyzeModelFolder(path, rel, folder, options);
      for (Finding& f : unvetted) folder.findings.push_back(std::move(f));
      // The folder's line sums the folder up: never "clean" above a malicious or inconclusive
      // file of it, even when the cross-file checks alone found nothing.
      folder.verdict = VerdictOf(folder.findings);
      for (std::size_t i = first_member; i < report.files.size(); ++i)
        folder.verdict = std::max(folder.verdict, report.files[i].verdict);
      report.files.push_back(std::move(folder));
    } else {
      report.files.push_back(ScanOneFile(path, options));
    }
  }
  for (const auto& f : report.files) report.verdict = std::max(report.verdict, f.verdict);
  return report;
}

}  // namespace airlock::scan
