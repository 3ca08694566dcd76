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
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/tokenizer.h"
#include "template/chat.h"

namespace airlock::cli {
namespace {

constexpr int kExitError = 3;

struct RunArgs {
  std::string model;
  std::string prompt;
  std::string system;
  int n_predict = 256;
  int threads = 0;
  int ctx = 0;
  bool no_template = false;
  bool verbose = false;
  engine::SamplerOptions sampling;
};

using Clock = std::chrono::steady_clock;

// The prompt's token ids: through the chat template when the model has one (and it is wanted),
// else the plain text with the vocabulary's BOS setting.
Result<std::vector<engine::TokenId>> BuildPrompt(const RunArgs& a, const engine::Model& model,
                                                 const engine::Tokenizer& tok) {
  const auto tmpl_source = model.gguf().GetString("tokenizer.chat_template");
  if (a.no_template || !tmpl_source) {
    std::string text = a.system.empty() ? a.prompt : a.system + "\n\n" + a.prompt;
    return tok.Encode(text, /*add_special=*/true, /*parse_special=*/false);
  }
  std::vector<tmpl::ChatMessage> messages;
  if (!a.system.empty()) {
    messages.push_back({"system", tmpl::Value::String(a.system, /*is_input=*/true), {}, {}, {}});
  }
  messages.push_back({"user", tmpl::Value::String(a.prompt, /*is_input=*/true), {}, {}, {}});
  tmpl::ChatOptions options;
  options.add_generation_prompt = true;
  if (tok.bos() != engine::kNoToken) options.bos_token = std::string(tok.TokenText(tok.bos()));
  if (tok.eos() != engine::kNoToken) options.eos_token = std::string(tok.TokenText(tok.eos()));
  AIRLOCK_ASSIGN_OR_RETURN(tmpl::ChatPrompt rendered,
                           tmpl::RenderChat(*tmpl_source, messages, options));
  std::vector<engine::TextSpan> spans;
  for (const auto& s : rendered.segments) {
    spans.push_back({s.begin, s.end, s.kind == tmpl::SegmentKind::kTemplate});
  }
  // Templates that print bos_token themselves must not get a second BOS from the tokenizer.
  const bool starts_with_bos =
      !options.bos_token.empty() && rendered.text.rfind(options.bos_token, 0) == 0;
  return tok.EncodeSpans(rendered.text, spans, /*add_special=*/!starts_with_bos);
}

int RunGenerate(const RunArgs& a) {
  const auto t_load = Clock::now();
  auto model = engine::Model::Load(a.model);
  if (!model) {
    std::fprintf(stderr, "airlock run: %s\n", model.error().ToString().c_str());
    return kExitError;
  }
  auto tok = engine::Tokenizer::FromGguf((*model)->gguf());
  if (!tok) {
    std::fprintf(stderr, "airlock run: %s\n", tok.error().ToString().c_str());
    return kExitError;
  }
  const engine::ModelConfig& c = (*model)->config();
  if (a.verbose) {
    std::fprintf(stderr,
                 "model: %s (%s), %d layers, embd %d, heads %d/%d, ff %d, vocab %d, ctx %d\n"
                 "tensors: %s; %.1f MB of weights; loaded in %.0f ms\n",
                 c.name.c_str(), c.architecture.c_str(), c.n_layer, c.n_embd, c.n_head, c.n_head_kv,
                 c.n_ff, c.n_vocab, c.n_ctx_train, (*model)->TypeSummary().c_str(),
                 c.weight_bytes / 1e6,
                 std::chrono::duration<double, std::milli>(Clock::now() - t_load).count());
  }
  auto prompt = BuildPrompt(a, **model, *tok);
  if (!prompt) {
    std::fprintf(stderr, "airlock run: %s\n", prompt.error().ToString().c_str());
    return kExitError;
  }
  if (prompt->empty()) {
    std::fprintf(stderr, "airlock run: the prompt is empty\n");
    return kExitError;
  }
  engine::SessionOptions so;
  so.n_threads = a.threads;
  so.n_ctx = a.ctx;
  auto session = engine::Session::Create(**model, so);
  if (!session) {
    std::fprintf(stderr, "airlock run: %s\n", session.error().ToString().c_str());
    return kExitError;
  }
  if (a.verbose) {
    std::fprintf(stderr, "prompt: %zu tokens; kernels %s, %d threads, ctx %d\n", prompt->size(),
                 (*session)->kernel_name(), (*session)->n_threads(), (*session)->n_ctx());
  }
  engine::Sampler sampler(a.sampling, c.n_vocab);
  for (engine::TokenId t : *prompt) sampler.Accept(t);
  const auto t0 = Clock::now();
  auto logits = (*session)->Eval(*prompt);
  if (!logits) {
    std::fprintf(stderr, "airlock run: %s\n", logits.error().ToString().c_str());
    return kExitError;
  }
  const auto t1 = Clock::now();
  engine::StreamDecoder decoder(*tok);
  int generated = 0;
  std::string stop_reason = "length";
  for (int i = 0; a.n_predict < 0 || i < a.n_predict; ++i) {
    const engine::TokenId next = sampler.Sample(*logits);
    if (tok->IsEog(next)) {
      stop_reason = "end of turn";
      break;
    }
    sampler.Accept(next);
    const std::string text = decoder.Push(next);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    ++generated;
    if ((*session)->position() >= (*session)->n_ctx()) {
      stop_reason = "context full";
      break;
    }
    logits = (*session)->Eval(std::span<const engine::TokenId>(&next, 1));
    if (!logits) {
      std::fprintf(stderr, "\nairlock run: %s\n", logits.error().ToString().c_str());
      return kExitError;
    }
  }
  const std::string rest = decoder.Flush();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  const double pp_s = std::chrono::duration<double>(t1 - t0).count();
  const double tg_s = std::chrono::duration<double>(Clock::now() - t1).count();
  std::fprintf(stderr, "[%zu prompt tokens, %.1f tok/s; %d generated, %.1f tok/s; stop: %s]\n",
               prompt->size(), prompt->size() / pp_s, generated,
               generated > 0 ? generated / tg_s : 0.0, stop_reason.c_str());
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
      "Architectures: llama, qwen2, qwen3. The file must pass airlock's GGUF structural checks.");
  cmd->add_option("model", args->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-p,--prompt", args->prompt, "Prompt text (the user message)")->required();
  cmd->add_option("-n,--n-predict", args->n_predict,
                  "Maximum tokens to generate (-1: until the end of turn or context)")
      ->capture_default_str();
  cmd->add_option("--temp", args->sampling.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", args->sampling.top_k, "Keep the k most likely tokens (0: off)")
      ->capture_default_str();
  cmd->add_option("--top-p", args->sampling.top_p, "Nucleus sampling threshold (1: off)")
      ->capture_default_str();
  cmd->add_option("--min-p", args->sampling.min_p,
                  "Drop tokens below min-p x the top probability (0: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", args->sampling.repeat_penalty,
                  "Penalty for recently seen tokens (1: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", args->sampling.penalty_last_n,
                  "How many recent tokens the penalties consider")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", args->sampling.presence_penalty,
                  "Subtracted once from seen tokens")
      ->capture_default_str();
  cmd->add_option("--frequency-penalty", args->sampling.frequency_penalty,
                  "Subtracted per occurrence")
      ->capture_default_str();
  cmd->add_option("--seed", args->sampling.seed, "Random seed (same seed, same output)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "Worker threads (0: all cores)")
      ->capture_default_str();
  cmd->add_option("-c,--ctx", args->ctx,
                  "Context length in tokens (0: min(training context, 4096))")
      ->capture_default_str();
  cmd->add_option("--system", args->system, "System message");
  cmd->add_flag("--no-template", args->no_template,
                "Send the prompt as plain text, without the chat template");
  cmd->add_flag("-v,--verbose", args->verbose,
                "Print a model summary and engine details to stderr");
  cmd->callback([args, exit_code] { *exit_code = RunGenerate(*args); });
}

}  // namespace airlock::cli
