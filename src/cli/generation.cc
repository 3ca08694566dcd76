#include "cli/generation.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>

#include "core/text.h"
#include "engine/chat_prompt.h"
#include "sign/sign.h"

namespace airlock::cli {

void AddGenerationFlags(CLI::App* cmd, GenerationFlags* f) {
  cmd->add_option("model", f->model, "GGUF model file")->required()->check(CLI::ExistingFile);
  cmd->add_option("-n,--n-predict", f->n_predict,
                  "Maximum tokens per reply (-1: until the end of turn or context)")
      ->capture_default_str();
  cmd->add_option("--temp", f->sampling.temperature, "Sampling temperature (0: greedy)")
      ->capture_default_str();
  cmd->add_option("--top-k", f->sampling.top_k, "Keep the k most likely tokens (0: off)")
      ->capture_default_str();
  cmd->add_option("--top-p", f->sampling.top_p, "Nucleus sampling threshold (1: off)")
      ->capture_default_str();
  cmd->add_option("--min-p", f->sampling.min_p,
                  "Drop tokens below min-p x the top probability (0: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-penalty", f->sampling.repeat_penalty,
                  "Penalty for recently seen tokens (1: off)")
      ->capture_default_str();
  cmd->add_option("--repeat-last-n", f->sampling.penalty_last_n,
                  "How many recent tokens the penalties consider")
      ->capture_default_str();
  cmd->add_option("--presence-penalty", f->sampling.presence_penalty,
                  "Subtracted once from seen tokens")
      ->capture_default_str();
  cmd->add_option("--frequency-penalty", f->sampling.frequency_penalty, "Subtracted per occurrence")
      ->capture_default_str();
  cmd->add_option("--seed", f->sampling.seed, "Random seed (same seed, same output)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", f->threads, "Worker threads (0: all cores)")
      ->capture_default_str();
  cmd->add_option("-c,--ctx", f->ctx,
                  "Context length in tokens, up to the model's training context; refused before "
                  "allocation when its KV cache does not fit the memory available (0: "
                  "min(training context, 4096))")
      ->capture_default_str();
  AddKvTypeOption(cmd, &f->kv_type);
  cmd->add_option("--system", f->system, "System message");
  cmd->add_flag("--no-template", f->no_template,
                "Send plain text, without the model's chat template");
  cmd->add_flag("-v,--verbose", f->verbose, "Print a model summary and engine details to stderr");
  cmd->add_option(
      "--require-signature", f->require_signature,
      "Public key (PEM): refuse to load a model whose signature does not verify (the model is "
      "copied into sealed memory, checked and loaded from there: needs free memory of "
      "its size)");
}

void AddKvTypeOption(CLI::App* cmd, std::string* kv_type) {
  cmd->add_option("--kv-type", *kv_type,
                  "KV cache type: f16 (default), f32 or q8_0 (half of f16; logits move more, see "
                  "docs/performance.md)")
      ->check(CLI::IsMember({"auto", "f16", "f32", "q8_0"}));
}

engine::KvCacheType KvTypeFromFlag(const std::string& kv_type) {
  return engine::ParseKvCacheType(kv_type).value_or(engine::KvCacheType::kAuto);
}

Result<core::PinnedFile> OpenCheckedModel(const std::string& model_path,
                                          const std::string& public_key) {
  AIRLOCK_ASSIGN_OR_RETURN(core::PinnedFile file, core::PinnedFile::Open(model_path));
  if (public_key.empty()) return file;
  // What is checked and loaded is a sealed copy: a writer of the file (even through a shared
  // mapping, which moves no timestamp) cannot change the bytes after the check.
  AIRLOCK_TRY(file.SealPrivateCopy());
  sign::VerifyOptions vo;
  vo.trust.public_key_path = public_key;
  vo.model_fd = file.fd();
  AIRLOCK_ASSIGN_OR_RETURN(sign::VerifyResult v, sign::VerifyModel(model_path, vo));
  if (!v.verified) return PermissionDenied("refusing to load " + model_path + ": " + v.message);
  // Written while it was hashed: the digest may mix old and new bytes.
  AIRLOCK_TRY(file.Unchanged());
  return file;
}

std::vector<std::string> GenerationInputs(const GenerationFlags& flags) {
  if (flags.require_signature.empty()) return {flags.model};
  return {flags.model, flags.model + ".sig", flags.require_signature};
}

Result<LoadedModel> LoadForGeneration(const GenerationFlags& flags) {
  const auto t0 = std::chrono::steady_clock::now();
  AIRLOCK_ASSIGN_OR_RETURN(core::PinnedFile file,
                           OpenCheckedModel(flags.model, flags.require_signature));
  LoadedModel m;
  engine::LoadOptions lo;
  lo.fd = file.fd();  // the bytes whose signature was checked, whatever the path names now
  AIRLOCK_ASSIGN_OR_RETURN(m.model, engine::Model::Load(flags.model, lo));
  // Written in place while it was parsed: the weights in memory are not the signed ones.
  if (!flags.require_signature.empty()) AIRLOCK_TRY(file.Unchanged());
  AIRLOCK_ASSIGN_OR_RETURN(engine::Tokenizer tok, engine::Tokenizer::FromGguf(m.model->gguf()));
  m.tokenizer.emplace(std::move(tok));
  engine::SessionOptions so;
  so.n_threads = flags.threads;
  so.n_ctx = flags.ctx;
  so.kv_type = KvTypeFromFlag(flags.kv_type);
  AIRLOCK_ASSIGN_OR_RETURN(m.session, engine::Session::Create(*m.model, so));
  if (flags.verbose) {
    const engine::ModelConfig& c = m.model->config();
    std::fprintf(
        stderr,
        "model: %s (%s), %d layers, embd %d, heads %d/%d, ff %d, vocab %d, train ctx %d\n"
        "tensors: %s; %.1f MB of weights; loaded in %.0f ms; kernels %s, %d threads, ctx %d\n",
        core::TerminalSafe(c.name).c_str(), core::TerminalSafe(c.architecture).c_str(), c.n_layer,
        c.n_embd, c.n_head, c.n_head_kv, c.n_ff, c.n_vocab, c.n_ctx_train,
        m.model->TypeSummary().c_str(), c.weight_bytes / 1e6,
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count(),
        m.session->kernel_name(), m.session->n_threads(), m.session->n_ctx());
  }
  return m;
}

Result<std::vector<engine::TokenId>> EncodeConversation(
    const LoadedModel& m, const std::vector<core::ChatMessage>& messages, bool no_template) {
  // Without a template the model sees plain text, which chat-tuned models answer poorly: say so
  // once per process rather than let the output look like an engine bug.
  static bool noticed = false;
  if (!no_template && !noticed && !m.model->gguf().GetString("tokenizer.chat_template")) {
    noticed = true;
    std::fprintf(stderr,
                 "notice: the model has no chat template (tokenizer.chat_template); the prompt is "
                 "sent as plain text\n");
  }
  return engine::EncodeChat(*m.model, *m.tokenizer, messages, no_template);
}

bool WantPromptProgress(bool stderr_is_terminal, std::size_t prompt_tokens, int chunk) {
  return stderr_is_terminal && chunk > 0 && prompt_tokens > static_cast<std::size_t>(chunk);
}

std::string PromptProgressText(std::size_t done, std::size_t total, double seconds) {
  std::string text = "prompt " + std::to_string(done) + "/" + std::to_string(total) + " tokens";
  if (seconds > 0) {
    char rate[32];
    std::snprintf(rate, sizeof(rate), ", %.0f tok/s", static_cast<double>(done) / seconds);
    text += rate;
  }
  return text;
}

Result<std::span<const float>> EvalPrompt(LoadedModel& m, std::span<const engine::TokenId> prompt) {
  if (!WantPromptProgress(::isatty(STDERR_FILENO) == 1, prompt.size(), m.session->max_batch()))
    return m.session->Eval(prompt);
  const auto t0 = std::chrono::steady_clock::now();
  auto draw = [&](std::size_t done, std::size_t total) {
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::fprintf(stderr, "\r\033[K%s", PromptProgressText(done, total, s).c_str());
    std::fflush(stderr);
  };
  auto logits = m.session->Eval(prompt, /*all_logits=*/false, draw);
  std::fprintf(stderr, "\r\033[K");  // cleared: the reply starts on a clean line
  std::fflush(stderr);
  return logits;
}

Result<ReplyStats> StreamReply(LoadedModel& m, engine::Sampler& sampler,
                               std::span<const float> logits, int n_predict) {
  ReplyStats stats;
  stats.stop_reason = "length";
  const auto t0 = std::chrono::steady_clock::now();
  engine::StreamDecoder decoder(*m.tokenizer);
  // The vocabulary comes from the model file: on a terminal, a token holding ESC or another
  // control sequence is shown escaped instead of being obeyed. Pipes get the exact bytes.
  const bool to_terminal = ::isatty(STDOUT_FILENO) == 1;
  auto emit = [to_terminal](const std::string& text) {
    const std::string shown = to_terminal ? core::TerminalSafeText(text) : text;
    std::fwrite(shown.data(), 1, shown.size(), stdout);
  };
  for (int i = 0; n_predict < 0 || i < n_predict; ++i) {
    const engine::TokenId next = sampler.Sample(logits);
    if (next == engine::kNoToken) {  // a grammar constraint allows nothing more
      stats.stop_reason = "end of document";
      break;
    }
    if (m.tokenizer->IsEog(next)) {
      stats.stop_reason = "end of turn";
      break;
    }
    sampler.Accept(next);
    const std::string text = decoder.Push(next);
    stats.text += text;
    emit(text);
    std::fflush(stdout);
    ++stats.generated;
    if (m.session->position() >= m.session->n_ctx()) {
      stats.stop_reason = "context full";
      break;
    }
    AIRLOCK_ASSIGN_OR_RETURN(logits, m.session->Eval(std::span<const engine::TokenId>(&next, 1)));
  }
  const std::string rest = decoder.Flush();
  stats.text += rest;
  emit(rest);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace airlock::cli
