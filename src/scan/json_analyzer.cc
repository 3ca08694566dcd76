// JSON files of a model repository: config.json / tokenizer_config.json (auto_map remote code,
// chat templates), *.index.json shard maps (file names must stay inside the folder), and
// suspicious free text (commands, scripts, odd URLs) in configuration values. Tokenizer
// vocabularies (tokenizer.json, vocab.json) are data and are only parsed.
#include <nlohmann/json.hpp>
#include <string>

#include "core/file.h"
#include "core/text.h"
#include "scan/internal/scanner.h"
#include "scan/internal/suspicious_text.h"

namespace airlock::scan::internal {

namespace {

using nlohmann::json;

std::string BaseName(std::string_view name) {
  auto slash = name.find_last_of("/\\");
  return std::string(slash == std::string_view::npos ? name : name.substr(slash + 1));
}

// Where `"key"` first appears in the raw JSON (best effort, for finding offsets).
std::optional<std::uint64_t> KeyOffset(const Target& t, std::string_view key) {
  std::string needle = "\"" + std::string(key) + "\"";
  auto pos = core::AsStringView(t.data).find(needle);
  if (pos == std::string_view::npos) return std::nullopt;
  return pos;
}

// auto_map values are "module.Class", or "org/repo--module.Class" (code from another repo), or
// a [slow, fast] pair for tokenizers.
void CheckAutoMap(Scanner& s, const Target& t, const json& auto_map) {
  std::vector<std::string> refs;
  auto collect = [&refs](const json& v) {
    if (v.is_string()) refs.push_back(v.get<std::string>());
  };
  if (auto_map.is_object()) {
    for (const auto& [k, v] : auto_map.items()) {
      if (v.is_array()) {
        for (const auto& e : v) collect(e);
      } else {
        collect(v);
      }
    }
  }
  if (refs.empty()) {
    s.Add(t, "config.remote-code", Severity::kMedium,
          "auto_map is present: loading with trust_remote_code would run code from the repository",
          KeyOffset(t, "auto_map"));
    return;
  }
  for (const std::string& ref : refs) {
    bool other_repo = ref.find("--") != std::string::npos;
    s.Add(t, other_repo ? "config.remote-code-external" : "config.remote-code",
          other_repo ? Severity::kHigh : Severity::kMedium,
          other_repo ? "auto_map loads code from another repository (\"" + Printable(ref) +
                           "\") when trust_remote_code is set"
                     : "auto_map names custom code \"" + Printable(ref) +
                           "\": loading with trust_remote_code runs it",
          KeyOffset(t, ref));
  }
}

bool LooksLikeTemplate(std::string_view v) {
  return v.find("{{") != std::string_view::npos || v.find("{%") != std::string_view::npos;
}

void CheckTemplates(Scanner& s, const Target& t, const json& root) {
  for (const auto& [key, value] : root.items()) {
    bool template_key = key.find("template") != std::string::npos;
    if (!template_key) continue;
    if (value.is_string()) {
      const auto& src = value.get_ref<const std::string&>();
      if (key == "chat_template" || LooksLikeTemplate(src)) {
        AnalyzeTemplateSource(s, t, src, std::nullopt, KeyOffset(t, key));
      }
    } else if (value.is_array()) {
      // [{"name": "default", "template": "..."}, {"name": "tool_use", ...}]
      for (const auto& e : value) {
        if (e.is_object() && e.contains("template") && e["template"].is_string()) {
          AnalyzeTemplateSource(s, t, e["template"].get_ref<const std::string&>(), std::nullopt,
                                KeyOffset(t, key));
        } else if (e.is_string()) {
          AnalyzeTemplateSource(s, t, e.get_ref<const std::string&>(), std::nullopt,
                                KeyOffset(t, key));
        }
      }
    }
  }
}

// model.safetensors.index.json / pytorch_model.bin.index.json: every shard file name must be a
// plain name in the same folder.
void CheckIndex(Scanner& s, const Target& t, const json& root) {
  const json* map = root.contains("weight_map") ? &root["weight_map"] : nullptr;
  if (map == nullptr || !map->is_object()) {
    s.Add(t, "index.bad-weight-map", Severity::kMedium, "shard index has no weight_map object");
    return;
  }
  int reported = 0;
  for (const auto& [tensor, file] : map->items()) {
    if (!file.is_string()) {
      s.Add(t, "index.bad-weight-map", Severity::kMedium,
            "weight_map entry \"" + Printable(tensor) + "\" is not a file name");
      if (++reported > 4) return;
      continue;
    }
    const auto& f = file.get_ref<const std::string&>();
    if (f.empty() || f.find('/') != std::string::npos || f.find('\\') != std::string::npos ||
        f == "." || f == ".." || f.find('\0') != std::string::npos) {
      s.Add(t, "index.path-traversal", Severity::kHigh,
            "weight_map sends tensor \"" + Printable(tensor) + "\" to \"" + Printable(f) +
                "\", a path outside the model folder",
            KeyOffset(t, tensor));
      if (++reported > 4) return;
    }
  }
}

// Free-text heuristics on configuration values (bounded walk).
void CheckValues(Scanner& s, const Target& t, const json& root) {
  struct Item {
    const json* v;
    std::string key;
    int depth;
  };
  std::vector<Item> stack{{&root, "", 0}};
  std::size_t visited = 0;
  int reported = 0;
  while (!stack.empty() && visited < 100000 && reported < 16) {
    Item it = stack.back();
    stack.pop_back();
    ++visited;
    if (it.v->is_object() || it.v->is_array()) {
      if (it.depth >= 32) continue;
      for (const auto& [k, v] : it.v->items()) {
        std::string key = it.v->is_object() ? k : it.key;
        // Templates go to the template analyzer instead.
        if (it.depth == 0 && key.find("template") != std::string::npos) continue;
        stack.push_back({&v, key, it.depth + 1});
      }
      continue;
    }
    if (!it.v->is_string()) continue;
    const auto& text = it.v->get_ref<const std::string&>();
    for (const TextMatch& m : FindSuspiciousText(text)) {
      Severity sev = Severity::kLow;
      switch (m.kind) {
        case TextKind::kPythonCode:
        case TextKind::kShell:
        case TextKind::kScript:
        case TextKind::kObfuscation:
          sev = Severity::kMedium;
          break;
        case TextKind::kUrl:
          sev = Severity::kLow;
          break;
      }
      s.Add(t, m.kind == TextKind::kUrl ? "json.url" : "json.suspicious-value", sev,
            "value of \"" + Printable(it.key, 60) + "\" contains " +
                std::string(TextKindName(m.kind)) + ": \"" + m.excerpt + "\"",
            KeyOffset(t, it.key));
      ++reported;
    }
  }
}

}  // namespace

void AnalyzeJson(Scanner& s, const Target& t) {
  if (t.depth == 0) s.SetFormat("json");
  if (t.data.size() > s.limits().max_json_bytes) {
    s.Incomplete(t, "json.too-large",
                 "JSON file larger than " + std::to_string(s.limits().max_json_bytes) +
                     " bytes was not analyzed",
                 0, Severity::kLow);
    return;
  }
  std::string_view text = core::AsStringView(t.data);
  std::string name = BaseName(t.name);
  // Vocabularies are data (often tens of MB): validate without building a DOM. Scanning their
  // strings for code would flag every code tokenizer, and templates do not live there.
  if (name == "tokenizer.json" || name == "vocab.json") {
    bool valid = false;
    try {
      valid = json::accept(text.begin(), text.end());
    } catch (const std::exception&) {
      valid = false;
    }
    if (!valid) {
      s.Incomplete(t, "json.invalid", "tokenizer vocabulary is not valid JSON", 0, Severity::kLow);
    }
    return;
  }
  json root = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    // "{% ... %}" / "{{ ... }}" files (*.template) start like JSON: vet them as templates.
    if (LooksLikeTemplate(text)) {
      AnalyzeTemplateSource(s, t, text, 0);
      return;
    }
    s.Incomplete(t, "json.invalid", "file looks like JSON but does not parse", 0, Severity::kLow);
    return;
  }
  if (!root.is_object()) return;  // lists of data (datasets, vocabularies)
  // A Keras model config (config.json of a Keras 3 `.keras` archive, or a saved architecture):
  // {"class_name": ..., "config": {...}} with layers that may carry Lambda code.
  if (root.contains("class_name") && root.contains("config") && root["config"].is_object()) {
    AnalyzeKerasConfig(s, t, text, 0);
  }
  // Vocabularies are data; scanning their strings for code would flag every code tokenizer.
  try {
    if (name == "added_tokens.json" || name == "special_tokens_map.json") {
      CheckTemplates(s, t, root);
      return;
    }
    if (name.ends_with(".index.json")) {
      CheckIndex(s, t, root);
      return;
    }
    if (root.contains("auto_map")) CheckAutoMap(s, t, root["auto_map"]);
    CheckTemplates(s, t, root);
    CheckValues(s, t, root);
  } catch (const std::exception& e) {
    s.Incomplete(t, "json.error", std::string("JSON analysis failed: ") + e.what());
  }
}

}  // namespace airlock::scan::internal
