// Model::Load: the GGUF checks, then the architecture's own loader from the registry
// (engine/arch.cc, engine/models/<arch>.cc), then the figures every architecture shares (weight
// bytes, active bytes per token, the type summary).
#include "engine/model.h"

#include "engine/internal/model_loader.h"
#include "engine/internal/weights.h"

namespace airlock::engine {

namespace gguf = formats::gguf;

Model::~Model() = default;

Result<std::unique_ptr<Model>> Model::Load(const std::string& path, const LoadOptions& options) {
  std::unique_ptr<Model> model(new Model());
  AIRLOCK_ASSIGN_OR_RETURN(model->file_, options.fd >= 0
                                             ? core::MappedFile::FromFd(options.fd, path)
                                             : core::MappedFile::Open(path));
  auto parsed = gguf::File::Parse(model->file_.bytes());
  if (!parsed) {
    return Status(parsed.error().code(),
                  "engine: refusing " + path +
                      ": it fails the GGUF structural checks: " + parsed.error().message());
  }
  model->gguf_ = std::move(parsed).value();
  const gguf::File& f = model->gguf_;
  if (options.strict && !f.issues().empty()) {
    return internal::Err(StatusCode::kCorrupt, path, "GGUF issue: " + f.issues()[0].message);
  }
  AIRLOCK_ASSIGN_OR_RETURN(model->config_, internal::LoadModelFromGguf(f, path, *model));
  return model;
}

std::string Model::TypeSummary() const { return type_summary_; }

namespace internal {

Result<ModelConfig> LoadModelFromGguf(const gguf::File& f, const std::string& path, Model& model) {
  ModelConfig c;
  c.architecture = std::string(f.architecture());
  const ArchSpec* spec = FindArch(c.architecture);
  if (spec == nullptr) {
    const std::string detail =
        c.architecture.empty() ? "general.architecture is missing"
                               : "architecture '" + c.architecture +
                                     "' is not supported (supported: " + SupportedArchNames() + ")";
    return Err(StatusCode::kUnsupported, path, detail);
  }
  c.arch = spec->arch;
  if (auto name = f.GetString(KeyName(c.arch, Key::kGeneralName))) c.name = std::string(*name);
  auto w = std::make_unique<ModelWeights>();
  ModelLoader ld(f, path, c.arch, &c, w.get());
  AIRLOCK_TRY(spec->load(ld));

  c.weight_bytes = ld.weight_bytes();
  if (c.moe.n_expert > 0) {
    // A decoded token reads one embedding row (untied), not the whole table, and only the
    // selected experts.
    std::uint64_t unused = 0;
    for (const LayerWeights& l : w->layers) {
      if (!l.is_moe) continue;
      for (const StackedMatrices* s : {&l.gate_exps, &l.up_exps, &l.down_exps})
        unused += s->matrix_bytes() * (c.moe.n_expert - c.moe.n_expert_used);
    }
    std::uint64_t active = c.weight_bytes - unused;
    if (!c.tied_output) active -= w->token_embd.row_bytes * (w->token_embd.rows - 1);
    c.moe.active_weight_bytes = active;
  }
  std::string summary;
  for (const auto& [type, count] : ld.type_counts()) {
    if (!summary.empty()) summary += ", ";
    summary += type + ": " + std::to_string(count);
  }
  model.type_summary_ = summary;
  model.weights_ = std::move(w);
  model.spec_ = spec;
  return c;
}

}  // namespace internal

}  // namespace airlock::engine
