// Internal to the scan module. A Scanner walks one top-level file: it detects the format of each
// byte range by content, dispatches to the analyzer for that format, and lets container
// analyzers (zip, tar, nested pickles) recurse through ScanChild under shared budgets (depth,
// member count, decompressed bytes). Analyzers report through Add/Incomplete.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "scan/scan.h"

namespace airlock::scan::internal {

enum class Format {
  kUnknownBinary,
  kText,  // printable UTF-8 we have no rule for (README, LICENSE...)
  kEmpty,
  kPickle,  // any pickle stream, protocols 0-5 (also legacy PyTorch and joblib files)
  kZip,     // any zip (PyTorch, TorchScript, npz, plain)
  kTar,
  kGzip,
  kXz,
  kBzip2,
  kSevenZip,
  kNpy,
  kGguf,
  kSafetensors,
  kJson,
  kJinja,         // a bare chat-template file (*.jinja)
  kPythonSource,  // *.py
  kExecutable,    // ELF, PE, Mach-O, shebang scripts
  kNotebook,      // *.ipynb
  kHdf5,          // HDF5 (Keras .h5 models)
  kImage,         // PNG, JPEG, GIF, WebP (model cards, sample outputs)
  kYaml,          // *.yaml / *.yml configs
  kTfGraph,       // TensorFlow SavedModel / GraphDef protobuf (*.pb)
};

std::string_view FormatName(Format f);

// Detects by content; `name` (a file or member name) only disambiguates text-like formats
// (.py, .jinja, .ipynb, .json) and never overrides binary magic.
Format DetectFormat(std::span<const std::byte> data, std::string_view name);

// The byte range being scanned and where it sits.
struct Target {
  std::span<const std::byte> data;
  std::string member;  // "" for the top-level file, else the member chain
  std::string name;    // the innermost file or member name (for name-based hints)
  int depth = 0;
  bool text = false;  // a line-oriented text format: findings get a line number
};

class Scanner {
 public:
  Scanner(FileReport& report, const ScanOptions& options) : report_(report), options_(options) {}

  const ScanOptions& options() const { return options_; }
  const ScanLimits& limits() const { return options_.limits; }

  // Detects the format of `target` and runs the matching analyzer.
  void Scan(const Target& target);

  // Scans `data` as a member named `member_name` of `parent` (depth + 1, member chain extended
  // with "!/" between nesting levels). Enforces max_depth and max_members.
  void ScanChild(const Target& parent, std::span<const std::byte> data,
                 std::string_view member_name);
  // Like ScanChild, but the member is analyzed as a pickle whatever its first bytes look like
  // (bytes given to pickle.loads or torch.load: protocol 0/1 streams have no header).
  void ScanChildAsPickle(const Target& parent, std::span<const std::byte> data,
                         std::string_view member_name);

  // Charges `bytes` of decompression against the file's budget; false (and an incomplete
  // finding) once the budget is spent.
  bool ChargeDecompressed(const Target& t, std::uint64_t bytes);

  void Add(const Target& t, std::string rule_id, Severity severity, std::string message,
           std::optional<std::uint64_t> offset = std::nullopt);
  // A finding that makes the scan inconclusive (parse error, cap hit, unsupported construct).
  void Incomplete(const Target& t, std::string rule_id, std::string message,
                  std::optional<std::uint64_t> offset = std::nullopt,
                  Severity severity = Severity::kMedium);

  // PyTorch zip archives: the sizes of the storage records (`data/<key>`), keyed by storage key,
  // that the pickle analyzer checks the storages declared by the archive's data.pkl against
  // (torch builds a storage of the declared size over the record's buffer). Set by the zip
  // analyzer around the scan of data.pkl; `depth` is that member's depth.
  struct TorchRecords {
    std::unordered_map<std::string, std::uint64_t> sizes;
    int depth = 0;
  };
  void SetTorchRecords(const TorchRecords* records) { torch_records_ = records; }
  const TorchRecords* torch_records() const { return torch_records_; }

  // Records the top-level format (first call wins).
  void SetFormat(std::string_view format);
  // Renames the recorded top-level format from `from` to the more specific `to` (e.g. "zip" to
  // "pytorch-zip"); no effect when the recorded format is something else.
  void RefineFormat(std::string_view from, std::string_view to);

 private:
  // The child target of `parent`, or nullopt (and an incomplete finding) over the limits.
  std::optional<Target> Child(const Target& parent, std::span<const std::byte> data,
                              std::string_view member_name);

  FileReport& report_;
  const ScanOptions& options_;
  const TorchRecords* torch_records_ = nullptr;
  std::uint64_t members_seen_ = 0;
  std::uint64_t decompressed_ = 0;
};

// Analyzers, one per format family, each in its own .cc file. They must never throw, never read
// outside `t.data`, and must report an Incomplete finding on anything they cannot fully vet.
void AnalyzePickle(Scanner& s, const Target& t);  // pickle_analyzer.cc
void AnalyzeZip(Scanner& s, const Target& t);     // zip_analyzer.cc
void AnalyzeArchive(Scanner& s, const Target& t,
                    Format f);                         // archive_analyzer.cc (tar/gz/xz/bz2/7z)
void AnalyzeNpy(Scanner& s, const Target& t);          // npy_analyzer.cc
void AnalyzeGguf(Scanner& s, const Target& t);         // gguf_analyzer.cc
void AnalyzeSafetensors(Scanner& s, const Target& t);  // safetensors_analyzer.cc
void AnalyzeJson(Scanner& s,
                 const Target& t);  // json_analyzer.cc (config, tokenizer_config, indexes)
// Checks a chat template's source for template-injection constructs. `offset` is where the
// template text starts within t.data (or nullopt when it came from a decoded JSON string, whose
// escapes break the mapping: then every finding is placed at `anchor`, e.g. the JSON key).
void AnalyzeTemplateSource(
    Scanner& s, const Target& t, std::string_view source, std::optional<std::uint64_t> offset,
    std::optional<std::uint64_t> anchor = std::nullopt);  // template_analyzer.cc

void AnalyzeHdf5(Scanner& s, const Target& t);     // keras_analyzer.cc
void AnalyzePython(Scanner& s, const Target& t);   // python_analyzer.cc
void AnalyzeYaml(Scanner& s, const Target& t);     // yaml_analyzer.cc
void AnalyzeTfGraph(Scanner& s, const Target& t);  // tensorflow_analyzer.cc
// Judges a Keras model config (the JSON in an .h5 `model_config` attribute or a .keras
// archive's config.json): Lambda layers, non-Keras modules, unknown registered names.
void AnalyzeKerasConfig(Scanner& s, const Target& t, std::string_view config_json,
                        std::optional<std::uint64_t> offset);  // keras_analyzer.cc

// Cross-file checks for a model folder (auto_map remote code, shard indexes, executables).
// `files` are paths relative to `root`. Findings go to `folder_report`.
void AnalyzeModelFolder(const std::string& root, const std::vector<std::string>& files,
                        FileReport& folder_report,
                        const ScanOptions& options);  // folder_analyzer.cc

}  // namespace airlock::scan::internal
