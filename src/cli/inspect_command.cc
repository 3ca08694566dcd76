// `airlock inspect FILE`: a summary of a GGUF or safetensors model read from its header only.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/sandboxing.h"
#include "scan/inspect.h"

namespace airlock::cli {
namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
  std::uint64_t ctx = 0;
  std::string kv_type = "f16";
};

int RunInspect(const InspectArgs& a) {
  scan::InspectOptions options;
  options.context = a.ctx;
  if (a.kv_type == "f32") {
    options.kv_type = scan::KvElementType::kF32;
  } else if (a.kv_type == "q8_0") {
    options.kv_type = scan::KvElementType::kQ8_0;
  }
  const std::filesystem::path beside = std::filesystem::path(a.path).parent_path();
  if (!EnterSandbox("inspect", {a.path, (beside / "config.json").string(),
                                (beside / "tokenizer_config.json").string()}))
    return kExitError;
  auto summary = scan::InspectFile(a.path, options);
  if (!summary.ok()) {
    std::fprintf(stderr, "airlock inspect: %s\n", summary.error().message().c_str());
    return summary.error().code() == StatusCode::kCorrupt ? kExitIncomplete : kExitError;
  }
  std::string text = a.json ? scan::RenderInspectJson(*summary) : scan::RenderInspectText(*summary);
  std::fwrite(text.data(), 1, text.size(), stdout);
  return 0;
}

}  // namespace

void AddInspectCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<InspectArgs>();
  CLI::App* cmd = app.add_subcommand(
      "inspect", "Summarize a GGUF or safetensors model before running it (header only)");
  cmd->footer(
      "Shows architecture, parameter count, tensor-type mix, context length, layers/heads,\n"
      "tokenizer and special tokens, chat template (never rendered; official or closest official\n"
      "template, and the natural-language text it adds to the prompt), license and source claims\n"
      "(unverified), and the memory needed at a context length (weights + the KV cache of "
      "airlock's engine, f16 unless --kv-type says otherwise).\n"
      "For safetensors, config.json / tokenizer_config.json beside the file are read too.\n"
      "Exit codes: 0 ok; 2 the file is malformed; 3 usage error or unsupported file.\n"
      "Examples:\n"
      "  airlock inspect qwen2.5-0.5b-instruct-q4_k_m.gguf\n"
      "  airlock inspect model.gguf --ctx 32768 --json\n");
  cmd->add_option("file", args->path, "GGUF or safetensors file")->required();
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  cmd->add_option("--ctx", args->ctx,
                  "Context length for the memory estimate (default: model's, at most 4096)");
  cmd->add_option("--kv-type", args->kv_type,
                  "KV cache type for the memory estimate: f16 (default), f32 or q8_0")
      ->check(CLI::IsMember({"f16", "f32", "q8_0"}));
  cmd->callback([args, exit_code] { *exit_code = RunInspect(*args); });
}

}  // namespace airlock::cli
