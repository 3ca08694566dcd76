// Cross-file checks for a model folder (a Hugging Face snapshot, an Ollama/llama.cpp model dir):
// symlinks that leave the folder (and scanning what they point to, since the per-file pass only
// scans regular files), auto_map code files, a code/executable inventory, and shard
// consistency (safetensors/bin index maps against the shards present and their headers; GGUF
// split parts). Only headers of shards are read.
#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <system_error>

#include "core/file.h"
#include "core/text.h"
#include "formats/gguf.h"
#include "formats/safetensors.h"
#include "scan/internal/scanner.h"
#include "scan/internal/suspicious_text.h"

namespace airlock::scan::internal {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class FolderReporter {
 public:
  FolderReporter(FileReport& report, std::string root) : report_(report), root_(std::move(root)) {}
  void Add(std::string rule, Severity sev, std::string message, const std::string& rel = "",
           bool incomplete = false) {
    Finding f;
    f.rule_id = std::move(rule);
    f.severity = sev;
    f.message = std::move(message);
    f.path = rel.empty() ? root_ : (fs::path(root_) / rel).string();
    f.incomplete = incomplete;
    report_.findings.push_back(std::move(f));
  }
  FileReport& report() { return report_; }

 private:
  FileReport& report_;
  std::string root_;
};

bool Inside(const fs::path& root, const fs::path& p) {
  auto r = root.lexically_normal().string();
  auto q = p.lexically_normal().string();
  if (!r.empty() && r.back() != '/') r += '/';
  return q.rfind(r, 0) == 0;
}

std::optional<json> ReadJson(const fs::path& p, std::uint64_t max_bytes) {
  auto text = core::ReadSmallFile(p.string(), max_bytes);
  if (!text.ok()) return std::nullopt;
  json j = json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return std::nullopt;
  return j;
}

// A Hugging Face cache snapshot links its files to ../../blobs/<hash>.
bool IsHfCacheBlob(const fs::path& root, const fs::path& target) {
  fs::path repo = root.lexically_normal().parent_path().parent_path();
  if (root.lexically_normal().parent_path().filename() != "snapshots") return false;
  return Inside(repo / "blobs", target);
}

void CheckSymlinks(FolderReporter& r, const fs::path& root, const std::vector<std::string>& files,
                   const ScanOptions& options) {
  std::error_code ec;
  fs::path canon_root = fs::weakly_canonical(root, ec);
  for (const std::string& rel : files) {
    fs::path p = root / rel;
    if (!fs::is_symlink(fs::symlink_status(p, ec))) continue;
    fs::path target = fs::weakly_canonical(p, ec);
    if (ec || !fs::exists(target, ec)) {
      r.Add("folder.dangling-symlink", Severity::kLow, "symlink points to nothing", rel);
      continue;
    }
    bool inside = Inside(canon_root, target);
    if (inside) continue;  // its target is scanned as a regular file of the folder
    if (!IsHfCacheBlob(canon_root, target)) {
      r.Add("folder.symlink-escape", Severity::kHigh,
            "symlink leaves the model folder (points to " + Printable(target.string(), 120) +
                "): serving or uploading the folder would expose that file",
            rel);
    }
    // The per-file pass skips symlinks: scan the target here so it is not left unvetted.
    if (fs::is_directory(target, ec)) {
      // Outside the folder (an inside one is walked anyway): its files were not scanned.
      r.Add("scan.unscanned-folder", Severity::kMedium,
            "symlink to a folder outside the model folder (" + Printable(target.string(), 120) +
                "): its files were not scanned",
            rel, true);
      continue;
    }
    if (!fs::is_regular_file(target, ec)) {
      r.Add("scan.special-file", Severity::kMedium,
            "symlink to something that is not a regular file (a FIFO, socket or device, " +
                Printable(target.string(), 120) +
                "): its contents cannot be scanned, and a loader would read whatever is "
                "written into it",
            rel, true);
      continue;
    }
    auto mapped = core::MappedFile::Open(target.string());
    if (!mapped.ok()) {
      r.Add("scan.read-error", Severity::kMedium, mapped.error().message(), rel, true);
      continue;
    }
    FileReport sub = ScanBuffer(mapped->bytes(), (root / rel).string(), options);
    for (Finding& f : sub.findings) r.report().findings.push_back(std::move(f));
  }
}

void CheckCode(FolderReporter& r, const fs::path& root, const std::vector<std::string>& files,
               const ScanOptions& options) {
  std::set<std::string> present(files.begin(), files.end());
  // auto_map in config.json / tokenizer_config.json names modules that trust_remote_code runs.
  for (const char* cfg : {"config.json", "tokenizer_config.json", "processor_config.json"}) {
    if (!present.count(cfg)) continue;
    auto j = ReadJson(root / cfg, options.limits.max_json_bytes);
    if (!j || !j->is_object() || !j->contains("auto_map")) continue;
    std::vector<std::string> refs;
    try {
      for (const auto& [k, v] : (*j)["auto_map"].items()) {
        if (v.is_string()) refs.push_back(v.get<std::string>());
        if (v.is_array())
          for (const auto& e : v)
            if (e.is_string()) refs.push_back(e.get<std::string>());
      }
    } catch (const std::exception&) {
      continue;
    }
    for (const std::string& ref : refs) {
      if (ref.find("--") != std::string::npos) continue;  // other repo: flagged per file
      auto dot = ref.rfind('.');
      if (dot == std::string::npos) continue;
      std::string module = ref.substr(0, dot);
      std::replace(module.begin(), module.end(), '.', '/');
      std::string py = module + ".py";
      if (present.count(py)) {
        r.Add("folder.remote-code-file", Severity::kMedium,
              std::string(cfg) + " auto_map runs " + py +
                  " when loaded with trust_remote_code: review it before loading",
              py);
      } else {
        r.Add("folder.missing-remote-code", Severity::kLow,
              std::string(cfg) + " auto_map names " + py +
                  ", which is not in the folder (it would be fetched at load time)",
              cfg);
      }
    }
  }
  // Inventory of code the folder ships (each file also gets its own finding when scanned).
  std::vector<std::string> code;
  for (const std::string& rel : files) {
    for (std::string_view ext : {".py", ".ipynb", ".sh", ".bat", ".ps1", ".exe", ".dll", ".so",
                                 ".dylib", ".js", ".pyc", ".whl"}) {
      if (core::EndsWithIgnoreCase(rel, ext)) {
        code.push_back(rel);
        break;
      }
    }
  }
  if (!code.empty()) {
    std::string list;
    for (std::size_t i = 0; i < code.size() && i < 10; ++i) list += (i ? ", " : "") + code[i];
    if (code.size() > 10) list += ", ...";
    r.Add("folder.code-inventory", Severity::kInfo,
          std::to_string(code.size()) + " code/executable file(s) in the model folder: " + list);
  }
}

// "model-00001-of-00004.safetensors" -> ("model", 4) and the part number.
struct ShardName {
  std::string stem;
  std::string ext;
  int part = 0;
  int total = 0;
};
std::optional<ShardName> ParseShardName(const std::string& name) {
  static const std::regex re(R"(^(.*)-(\d{5})-of-(\d{5})\.(safetensors|bin|gguf)$)");
  std::smatch m;
  if (!std::regex_match(name, m, re)) return std::nullopt;
  ShardName s;
  s.stem = m[1];
  s.part = std::stoi(m[2]);
  s.total = std::stoi(m[3]);
  s.ext = m[4];
  return s;
}

void CheckShards(FolderReporter& r, const fs::path& root, const std::vector<std::string>& files,
                 const ScanOptions& options) {
  std::set<std::string> present(files.begin(), files.end());
  std::set<std::string> indexed_shards;
  for (const std::string& rel : files) {
    if (!core::EndsWithIgnoreCase(rel, ".index.json")) continue;
    auto j = ReadJson(root / rel, options.limits.max_json_bytes);
    if (!j || !j->is_object() || !j->contains("weight_map") || !(*j)["weight_map"].is_object())
      continue;  // the per-file JSON pass reports malformed indexes
    fs::path dir = fs::path(rel).parent_path();
    std::map<std::string, std::set<std::string>> by_shard;  // shard -> tensors the index puts there
    for (const auto& [tensor, file] : (*j)["weight_map"].items()) {
      if (!file.is_string()) continue;
      const auto& f = file.get_ref<const std::string&>();
      if (f.find('/') != std::string::npos || f.find('\\') != std::string::npos || f == "..")
        continue;  // path traversal: reported by the JSON pass
      by_shard[f].insert(tensor);
    }
    for (const auto& [shard, tensors] : by_shard) {
      std::string shard_rel = (dir / shard).string();
      indexed_shards.insert(shard_rel);
      if (!present.count(shard_rel)) {
        r.Add("folder.missing-shard", Severity::kMedium,
              rel + " maps " + std::to_string(tensors.size()) + " tensor(s) to " + shard +
                  ", which is not in the folder",
              rel, true);
        continue;
      }
      if (!core::EndsWithIgnoreCase(shard, ".safetensors")) continue;
      auto mapped = core::MappedFile::Open((root / shard_rel).string());
      if (!mapped.ok()) continue;
      auto header = formats::safetensors::File::Parse(mapped->bytes());
      if (!header.ok()) continue;  // reported when the shard itself is scanned
      std::set<std::string> actual;
      for (const auto& t : header->tensors()) actual.insert(t.name);
      std::vector<std::string> missing, extra;
      for (const auto& t : tensors)
        if (!actual.count(t)) missing.push_back(t);
      for (const auto& t : actual)
        if (!tensors.count(t)) extra.push_back(t);
      if (!missing.empty()) {
        r.Add("folder.index-mismatch", Severity::kMedium,
              rel + " puts " + std::to_string(missing.size()) + " tensor(s) in " + shard +
                  " that it does not contain (first: \"" + Printable(missing[0]) + "\")",
              shard_rel, true);
      }
      if (!extra.empty()) {
        r.Add("folder.index-mismatch", Severity::kMedium,
              shard + " holds " + std::to_string(extra.size()) + " tensor(s) that " + rel +
                  " does not list (first: \"" + Printable(extra[0]) +
                  "\"): loaders disagree on whether they are used",
              shard_rel, true);
      }
    }
  }
  // Numbered parts: all of 1..N present, and (for safetensors/bin) listed in an index if any.
  std::map<std::string, std::pair<int, std::set<int>>> groups;  // dir/stem.ext -> total, parts
  for (const std::string& rel : files) {
    fs::path p(rel);
    auto s = ParseShardName(p.filename().string());
    if (!s) continue;
    auto& g = groups[(p.parent_path() / (s->stem + "." + s->ext)).string()];
    g.first = std::max(g.first, s->total);
    g.second.insert(s->part);
    if (!indexed_shards.empty() && s->ext != "gguf" && !indexed_shards.count(rel)) {
      r.Add("folder.unreferenced-shard", Severity::kLow,
            "shard is not referenced by the folder's index", rel);
    }
  }
  // GGUF split parts: each part's split.no / split.count must match its file name.
  for (const std::string& rel : files) {
    fs::path p(rel);
    auto s = ParseShardName(p.filename().string());
    if (!s || s->ext != "gguf") continue;
    auto mapped = core::MappedFile::Open((root / rel).string());
    if (!mapped.ok()) continue;
    auto header = formats::gguf::File::Parse(mapped->bytes());
    if (!header.ok()) continue;  // reported when the part itself is scanned
    auto no = header->GetUint("split.no");
    auto count = header->GetUint("split.count");
    if (!no && !count) continue;  // not written by gguf-split
    if (!no || !count || *no != static_cast<std::uint64_t>(s->part - 1) ||
        *count != static_cast<std::uint64_t>(s->total)) {
      r.Add("folder.split-mismatch", Severity::kMedium,
            "split.no/split.count (" + (no ? std::to_string(*no) : std::string("?")) + "/" +
                (count ? std::to_string(*count) : std::string("?")) +
                ") do not match the part's file name",
            rel, true);
    }
  }
  for (const auto& [group, g] : groups) {
    if (g.first > 100000) continue;
    for (int i = 1; i <= g.first; ++i) {
      if (!g.second.count(i)) {
        r.Add("folder.missing-shard", Severity::kMedium,
              "part " + std::to_string(i) + " of " + std::to_string(g.first) + " of " + group +
                  " is missing",
              "", true);
        break;
      }
    }
  }
}

}  // namespace

void AnalyzeModelFolder(const std::string& root, const std::vector<std::string>& files,
                        FileReport& folder_report, const ScanOptions& options) {
  FolderReporter r(folder_report, root);
  try {
    CheckSymlinks(r, fs::path(root), files, options);
    CheckCode(r, fs::path(root), files, options);
    CheckShards(r, fs::path(root), files, options);
  } catch (const std::exception& e) {
    r.Add("folder.error", Severity::kMedium, std::string("model-folder checks failed: ") + e.what(),
          "", true);
  }
}

}  // namespace airlock::scan::internal
