// `airlock run MODEL.gguf -p "..."`: one-shot generation with Airlock's own CPU engine. The
// prompt goes through the model's own chat template (sandboxed interpreter; user text never
// becomes control tokens) unless --no-template; generated text streams to stdout, statistics go
// to stderr. The model file must pass the GGUF structural checks to load. --json-schema FILE and
// --json constrain the reply with a grammar (engine/grammar.h): it is then valid JSON of the
// schema (or any JSON object) whatever the model, and generation ends when the document does.
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/generation.h"
#include "cli/sandboxing.h"
#include "core/file.h"
#include "engine/grammar.h"

namespace airlock::cli {
namespace {

struct RunArgs {
  GenerationFlags gen;
  std::string prompt;
  std::string json_schema_file;  // constrain the reply to this JSON Schema
  bool json_object = false;      // constrain the reply to any JSON object
};

// The grammar the flags ask for; nullptr when none. Errors: the schema file cannot be read, or
// the schema is invalid or uses unsupported keywords.
Result<std::shared_ptr<const engine::Grammar>> RequestedGrammar(const RunArgs& a) {
  if (!a.json_schema_file.empty()) {
    AIRLOCK_ASSIGN_OR_RETURN(std::string schema, core::ReadSmallFile(a.json_schema_file, 4u << 20));
    return engine::CompileJsonSchema(schema);
  }
  if (a.json_object) return engine::JsonObjectGrammar();
  return std::shared_ptr<const engine::Grammar>();
}

int RunGenerate(const RunArgs& a) {
  // The schema file is read before the sandbox closes the file system to the model's inputs.
  auto grammar = RequestedGrammar(a);
  if (!grammar) {
    std::fprintf(stderr, "airlock run: %s\n", grammar.error().ToString().c_str());
    return kExitError;
  }
  if (!EnterSandbox("run", GenerationInputs(a.gen))) return kExitError;
  auto loaded = LoadForGeneration(a.gen);
  if (!loaded) {
    std::fprintf(stderr, "airlock run: %s\n", loaded.error().ToString().c_str());
    return kExitError;
  }
  std::vector<core::ChatMessage> messages;
  if (!a.gen.system.empty()) {
    messages.push_back({"system", a.gen.system, "", ""});
  }
  messages.push_back({"user", a.prompt, "", ""});
  auto prompt = EncodeConversation(*loaded, messages, a.gen.no_template);
  if (!prompt || prompt->empty()) {
    std::fprintf(stderr, "airlock run: %s\n",
                 prompt ? "the prompt is empty" : prompt.error().ToString().c_str());
    return kExitError;
  }
  if (a.gen.verbose) std::fprintf(stderr, "prompt: %zu tokens\n", prompt->size());
  engine::Sampler sampler(a.gen.sampling, loaded->model->config().n_vocab);
  for (engine::TokenId t : *prompt) sampler.Accept(t);
  if (*grammar) {
    sampler.SetConstraint(std::make_unique<engine::TokenConstraint>(*grammar, *loaded->tokenizer));
    if (a.gen.verbose) {
      std::fprintf(stderr, "grammar:\n%s", engine::GrammarToText(**grammar).c_str());
    }
  }
  const auto t0 = std::chrono::steady_clock::now();
  auto logits = EvalPrompt(*loaded, *prompt);
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
  if (sampler.constraint_failed()) {
    std::fprintf(stderr,
                 "airlock run: no token of the vocabulary can continue the JSON document\n");
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
  auto* schema = cmd->add_option("--json-schema", args->json_schema_file,
                                 "Constrain the reply to JSON matching this JSON Schema file "
                                 "(grammar-constrained sampling; see docs/structured-output.md)")
                     ->check(CLI::ExistingFile);
  cmd->add_flag("--json", args->json_object, "Constrain the reply to a JSON object")
      ->excludes(schema);
  cmd->callback([args, exit_code] { *exit_code = RunGenerate(*args); });
}

}  // namespace airlock::cli
