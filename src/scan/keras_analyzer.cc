// Keras models: HDF5 (.h5) files carry the architecture as JSON in a `model_config` attribute;
// Keras 3 `.keras` archives carry it as config.json. Loading a Lambda layer deserializes Python
// code (marshalled bytecode or source), and module/function references in the config import
// arbitrary Python (CVE-2024-3660, CVE-2025-1550, CVE-2025-9905/9906).
//
// We do not implement a full HDF5 reader: small attributes are stored inline in the object
// header, so the config JSON appears verbatim in the file. We locate it by content and parse
// it strictly; an HDF5 file that names `model_config` but whose JSON cannot be found is
// inconclusive (fail closed).
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "core/file.h"
#include "scan/internal/scanner.h"

namespace airlock::scan::internal {
namespace {

using nlohmann::json;

bool IsKerasModule(std::string_view m) {
  for (std::string_view ok :
       {"keras", "tensorflow", "tf_keras", "keras_nlp", "keras_hub", "keras_cv", "builtins"}) {
    if (m == ok || (m.size() > ok.size() && m.substr(0, ok.size()) == ok && m[ok.size()] == '.'))
      return true;
  }
  return false;
}

std::vector<std::string_view> Components(std::string_view path) {
  std::vector<std::string_view> parts;
  while (parts.size() < 64) {
    std::size_t dot = path.find('.');
    parts.push_back(path.substr(0, dot));
    if (dot == std::string_view::npos) break;
    path.remove_prefix(dot + 1);
  }
  return parts;
}

// The Python object a Keras 3 config names, resolved as serialization_lib's
// _retrieve_class_or_fn does: `module` + "." + `class_name` (so {"module": "keras",
// "class_name": "layers.Lambda"} is keras.layers.Lambda), and for {"class_name": "function"}
// the function named by `config`. Without a module the bare class name is looked up in Keras'
// registry.
std::string ResolveKerasObject(const json& node) {
  auto get = [&](const char* key) -> std::string {
    auto it = node.find(key);
    return it != node.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::string module = get("module");
  std::string name = get("class_name");
  if (name == "function") {
    if (auto cfg = node.find("config"); cfg != node.end() && cfg->is_string()) {
      name = cfg->get<std::string>();
    }
  }
  return module.empty() ? name : module + "." + name;
}

// What a resolved Keras name does when the model is loaded. Areas of the Keras API whose objects
// are layers, initializers, regularizers, constraints, activations, optimizers, losses, metrics
// and models are what model configs contain; utils/saving/backend/config/applications hold
// functions that download files (utils.get_file), load other models (saving.load_model), switch
// off safe mode (config.enable_unsafe_deserialization) or change global state, and any of them
// named where Keras deserializes an initializer, activation, constraint or layer is called or
// imported at load time.
enum class KerasRef { kSafe, kDangerous, kUnknown };
KerasRef JudgeKerasReference(std::string_view resolved, std::string* area_out) {
  auto parts = Components(resolved);
  std::size_t i = 1;  // after the package (keras, keras_hub, tf_keras...)
  while (i < parts.size() && (parts[i] == "src" || parts[i] == "api" || parts[i] == "_api" ||
                              parts[i] == "v2" || parts[i] == "keras")) {
    ++i;
  }
  if (i + 1 >= parts.size()) return KerasRef::kSafe;  // keras.Sequential, keras.Model...
  std::string_view area = parts[i];
  *area_out = std::string(area);
  for (std::string_view bad : {"utils", "saving", "backend", "config", "applications", "datasets",
                               "export", "distribution", "callbacks", "preprocessing", "legacy",
                               "mixed_precision_global", "random", "tree", "visualization"}) {
    if (area == bad) return KerasRef::kDangerous;
  }
  for (std::string_view ok :
       {"layers",         "initializers",    "regularizers", "constraints", "activations",
        "optimizers",     "losses",          "metrics",      "models",      "engine",
        "dtype_policies", "mixed_precision", "ops",          "quantizers",  "backbones",
        "tokenizers",     "preprocessors",   "samplers",     "schedules",   "optimizers_v2",
        "feature_column", "premade_models",  "premade"}) {
    if (area == ok) return KerasRef::kSafe;
  }
  return KerasRef::kUnknown;
}

void WalkConfig(Scanner& s, const Target& t, const json& node, std::optional<std::uint64_t> offset,
                int depth) {
  if (depth > 64) {
    s.Incomplete(t, "keras.limit", "Keras config nested deeper than 64 levels", offset);
    return;
  }
  if (node.is_object()) {
    auto cls = node.find("class_name");
    if (cls != node.end() && cls->is_string()) {
      std::string resolved = ResolveKerasObject(node);
      std::string_view name = Components(resolved).back();
      auto mod_it = node.find("module");
      bool keras_module = mod_it != node.end() && mod_it->is_string() &&
                          IsKerasModule(mod_it->get_ref<const std::string&>()) &&
                          mod_it->get_ref<const std::string&>() != "builtins";
      std::string area;
      KerasRef ref = keras_module ? JudgeKerasReference(resolved, &area) : KerasRef::kSafe;
      if (ref == KerasRef::kDangerous) {
        s.Add(t, "keras.load-time-call", Severity::kHigh,
              "config names " + resolved.substr(0, 120) + " (keras." + area +
                  "), which Keras imports and calls while loading the model (downloads, file "
                  "access, other models, safe-mode switches)",
              offset);
      } else if (ref == KerasRef::kUnknown) {
        s.Add(t, "keras.unknown-reference", Severity::kMedium,
              "config names " + resolved.substr(0, 120) +
                  ", outside the Keras layer/initializer/optimizer APIs; review what it does "
                  "when loaded",
              offset);
      }
      if (name == "Lambda") {
        std::string what = "Lambda layer";
        if (auto cfg = node.find("config"); cfg != node.end() && cfg->is_object()) {
          if (auto fn = cfg->find("function"); fn != cfg->end()) {
            what += fn->is_string() ? ": function '" + fn->get<std::string>().substr(0, 120) + "'"
                                    : " with serialized function code";
          }
        }
        s.Add(t, "keras.lambda-layer", Severity::kCritical,
              what + ": Keras deserializes and runs this Python code when the model is loaded",
              offset);
      } else if (cls->get_ref<const std::string&>() == "__lambda__") {
        // Keras 3's deserialize_keras_object rebuilds {"class_name": "__lambda__"} with
        // func_load (marshalled bytecode) wherever a callable is accepted: an activation, an
        // initializer, a loss... not only in Lambda layers.
        s.Add(t, "keras.lambda-layer", Severity::kCritical,
              "serialized Python function (\"__lambda__\"): Keras unmarshals and runs this code "
              "when the model is loaded",
              offset);
      } else if (name == "TFOpLambda") {
        s.Add(t, "keras.tfop-lambda", Severity::kMedium,
              "TFOpLambda layer calls a TensorFlow function named in the config; review it",
              offset);
      }
    }
    auto mod = node.find("module");
    if (mod != node.end() && mod->is_string() &&
        !IsKerasModule(mod->get_ref<const std::string&>())) {
      s.Add(t, "keras.foreign-module", Severity::kHigh,
            "config references Python module '" + mod->get<std::string>().substr(0, 120) +
                "', which Keras imports on load (CVE-2025-1550)",
            offset);
    }
    for (const auto& [key, value] : node.items()) WalkConfig(s, t, value, offset, depth + 1);
  } else if (node.is_array()) {
    for (const auto& v : node) WalkConfig(s, t, v, offset, depth + 1);
  }
}

// The JSON object starting at `begin` (which holds '{'), honouring strings; npos if unbalanced.
std::size_t JsonObjectEnd(std::string_view text, std::size_t begin) {
  int depth = 0;
  bool in_string = false;
  for (std::size_t i = begin; i < text.size(); ++i) {
    char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
      continue;
    }
    if (c == '"')
      in_string = true;
    else if (c == '{')
      ++depth;
    else if (c == '}' && --depth == 0)
      return i + 1;
    else if (c == '\0')
      return std::string_view::npos;
  }
  return std::string_view::npos;
}

}  // namespace

void AnalyzeKerasConfig(Scanner& s, const Target& t, std::string_view config_json,
                        std::optional<std::uint64_t> offset) {
  json doc = json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    s.Incomplete(t, "keras.parse-error", "Keras model config is not valid JSON", offset);
    return;
  }
  WalkConfig(s, t, doc, offset, 0);
}

void AnalyzeHdf5(Scanner& s, const Target& t) {
  std::string_view text = core::AsStringView(t.data);
  bool names_config = text.find("model_config") != std::string_view::npos;
  std::size_t found = 0;
  constexpr std::string_view kStart = "{\"class_name\"";
  for (std::size_t pos = text.find(kStart); pos != std::string_view::npos && found < 64;
       pos = text.find(kStart, pos + 1)) {
    std::size_t end = JsonObjectEnd(text, pos);
    if (end == std::string_view::npos) continue;
    if (end - pos > s.limits().max_json_bytes) {
      s.Incomplete(t, "keras.limit", "Keras model config larger than the JSON limit", pos);
      return;
    }
    ++found;
    AnalyzeKerasConfig(s, t, text.substr(pos, end - pos), pos);
    pos = end - 1;
  }
  if (names_config && found == 0) {
    s.Incomplete(t, "keras.config-not-found",
                 "HDF5 file names a model_config attribute but its JSON could not be located "
                 "(compressed or in a global heap): architecture not vetted",
                 0);
  }
}

}  // namespace airlock::scan::internal
