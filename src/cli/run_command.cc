// `airlock run MODEL.gguf -p "..."`: one-shot generation with Airlock's own CPU engine. The
// prompt goes through the model's own chat template (sandboxed interpreter; user text never
// becomes control tokens) unless --no-template; generated text streams to stdout, statistics go
// to stderr. The model file must pass the GGUF structural checks to load.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/generation.h"

namespace airlock::cli {
namespace {

constexpr int kExitError = 3;

struct RunArgs {
  GenerationFlags gen;
  std::string prompt;
};

int RunGenerate(const RunArgs& a) {
  auto loaded = LoadForGeneration(a.gen);
  if (!loaded) {
    std::fprintf(stderr, "airlock run: %s\n", loaded.error().ToString().c_str());
    return kExitError;
  }
  std::vector<tmpl::ChatMessage> messages;
  if (!a.gen.system.empty()) {
    messages.push_back(
        {"system", tmpl::Value::String(a.gen.system, /*is_input=*/true), {}, {}, {}});
  }
  messages.push_back({"user", tmpl::Value::String(a.prompt, /*is_input=*/true), {}, {}, {}});
  auto prompt = EncodeConversation(*loaded, messages, a.gen.no_template);
  if (!prompt || prompt->empty()) {
    std::fprintf(stderr, "airlock run: %s\n",
                 prompt ? "the prompt is empty" : prompt.error().ToString().c_str());
    return kExitError;
  }
  if (a.gen.verbose) std::fprintf(stderr, "prompt: %zu tokens\n", prompt->size());
  engine::Sampler sampler(a.gen.sampling, loaded->model->config().n_vocab);
  for (engine::TokenId t : *prompt) sampler.Accept(t);
  const auto t0 = std::chrono::steady_clock::now();
  auto logits = loaded->session->Eval(*prompt);
  if (!logits) {
    std::fprintf(stderr, "airlock run: %s\n", logits.error().ToString().c_str());
    return kExitError;
  }
  const double pp_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  auto reply = StreamReply(*loaded, sampler, *logits, a.gen.n_predict);
  if (!reply) {
    std::fprintf(stderr, "airlock run: %s\n", reply.error().ToString().c_str());
    return kExitError;
  }
  std::fprintf(stderr, "[%zu prompt tokens, %.1f tok/s; %d generated, %.1f tok/s; stop: %s]\n",
               prompt->size(), prompt->size() / pp_s, reply->generated,
               reply->generated > 0 ? reply->generated / reply->seconds : 0.0,
               reply->stop_reason.c_str());
  return 0;
}

}  // namespace

void AddRunCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<RunArgs>();
  CLI::App* cmd =
      app.add_subcommand("run", "Generate text from a GGUF model with the built-in CPU engine");
  cmd->footer(
      "Example:\n  airlock run qwen2.5-0.5b-instruct-q4_k_m.gguf -p \"Why is the sky blue?\" -n "
      "128 "
      "--temp 0.7 --seed 1\n"
      "Architectures: llama, qwen2, qwen3, qwen2moe, qwen3moe, deepseek2. The file must pass\n"
      "airlock's GGUF structural checks. A model without a chat template gets the prompt as plain\n"
      "text (a notice says so).");
  AddGenerationFlags(cmd, &args->gen);
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text (the user message)")->required();
  cmd->callback([args, exit_code] { *exit_code = RunGenerate(*args); });
}

}  // namespace airlock::cli
