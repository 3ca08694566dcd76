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

void WalkConfig(Scanner& s, const Target& t, const json& node, std::optional<std::uint64_t> offset,
                int depth) {
  if (depth > 64) {
    s.Incomplete(t, "keras.limit", "Keras config nested deeper than 64 levels", offset);
    return;
  }
  if (node.is_object()) {
    auto cls = node.find("class_name");
    if (cls != node.end() && cls->is_string()) {
      const std::string& name = cls->get_ref<const std::string&>();
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
