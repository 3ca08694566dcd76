// airlock perplexity: perplexity of a GGUF model on a text (llama.cpp's method,
// docs/perplexity.md), and the KL-divergence comparison of a quantized model against saved
// reference logits.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/generation.h"
#include "cli/sandboxing.h"
#include "core/file.h"
#include "engine/model.h"
#include "engine/perplexity.h"
#include "engine/session.h"
#include "engine/tokenizer.h"

namespace airlock::cli {
namespace {

using Json = nlohmann::json;

struct PerplexityArgs {
  std::string model;
  std::string text_file;
  int ctx = 512;
  int chunks = -1;
  int threads = 0;
  std::string kv_type = "auto";
  int top_k = engine::kDefaultTopK;
  bool json = false;
  std::string save_logits;
  std::string kl_divergence;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "airlock perplexity: %s\n", message.c_str());
  return kExitFailed;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string PercentileLabel(double f) {
  if (f <= 0) return "min";
  if (f >= 1) return "max";
  if (f == 0.5) return "median";
  return Fixed(f * 100, 0) + "%";
}

Json EstimateJson(const engine::Estimate& e) {
  return Json{{"value", e.value}, {"error", e.error}};
}

Json KlJson(const engine::KlSummary& k) {
  Json j;
  j["positions"] = k.positions;
  j["reference_top_k"] = k.top_k;
  j["reference_mean_tail_mass"] = k.mean_tail_mass;
  j["ppl"] = EstimateJson(k.ppl);
  j["ppl_reference"] = EstimateJson(k.ppl_ref);
  j["ppl_ratio"] = EstimateJson(k.ppl_ratio);
  j["ln_ppl_ratio"] = EstimateJson(k.ln_ppl_ratio);
  j["ln_ppl_correlation"] = k.ln_ppl_correlation;
  j["mean_kl_divergence"] = EstimateJson(k.kld);
  j["top1_agreement"] = EstimateJson(k.top1_agreement);
  j["delta_p_mean"] = EstimateJson(k.delta_p);
  j["delta_p_rms"] = k.delta_p_rms;
  Json kp = Json::object(), dp = Json::object();
  for (const auto& [f, v] : k.kld_percentiles) kp[PercentileLabel(f)] = v;
  for (const auto& [f, v] : k.delta_p_percentiles) dp[PercentileLabel(f)] = v;
  j["kl_divergence_percentiles"] = kp;
  j["delta_p_percentiles"] = dp;
  return j;
}

void PrintKlTable(const engine::KlSummary& k, const std::string& base, int n_vocab) {
  std::printf("\nKL divergence against %s: %lld positions\n", base.c_str(),
              static_cast<long long>(k.positions));
  if (k.top_k < n_vocab) {
    std::printf(
        "(the reference rows keep the top %d of %d tokens and lump the rest, which held %.2f%% of\n"
        " the reference probability on average: the KL below is a lower bound of the full KL,\n"
        " tight when that share is small; --top-k %d on --save-logits stores whole rows)\n",
        k.top_k, n_vocab, 100 * k.mean_tail_mass, n_vocab);
  }
  std::printf("  %-22s %12s   %s\n", "", "value", "± error");
  auto row = [](const char* name, double v, double e, int digits, const char* unit) {
    std::printf("  %-22s %12s   %-10s %s\n", name, Fixed(v, digits).c_str(),
                Fixed(e, digits).c_str(), unit);
  };
  row("PPL (this model)", k.ppl.value, k.ppl.error, 4, "");
  row("PPL (reference)", k.ppl_ref.value, k.ppl_ref.error, 4, "");
  row("PPL ratio", k.ppl_ratio.value, k.ppl_ratio.error, 5, "");
  row("ln(PPL ratio)", k.ln_ppl_ratio.value, k.ln_ppl_ratio.error, 5, "");
  row("mean KL divergence", k.kld.value, k.kld.error, 6, "nats");
  row("top-1 agreement", 100 * k.top1_agreement.value, 100 * k.top1_agreement.error, 2, "%");
  row("mean delta p", 100 * k.delta_p.value, 100 * k.delta_p.error, 3, "% (correct token)");
  std::printf("  %-22s %12s\n", "RMS delta p", (Fixed(100 * k.delta_p_rms, 3) + " %").c_str());
  std::printf("\n  %-16s", "percentile");
  for (const auto& [f, v] : k.kld_percentiles) std::printf(" %9s", PercentileLabel(f).c_str());
  std::printf("\n  %-16s", "KL (nats)");
  for (const auto& [f, v] : k.kld_percentiles) std::printf(" %9.5f", v);
  std::printf("\n  %-16s", "delta p (%)");
  for (const auto& [f, v] : k.delta_p_percentiles) std::printf(" %9.3f", 100 * v);
  std::printf("\n");
}

int RunPerplexityCommand(const PerplexityArgs& a) {
  const bool tty = ::isatty(STDERR_FILENO);
  if (!EnterSandbox("perplexity", {a.model, a.text_file, a.kl_divergence}, {a.save_logits}))
    return kExitError;
  auto model = engine::Model::Load(a.model);
  if (!model.has_value()) return Fail(a.model + ": " + model.error().message());
  auto tokenizer = engine::Tokenizer::FromGguf((*model)->gguf());
  if (!tokenizer.has_value()) return Fail(a.model + ": " + tokenizer.error().message());
  if (tokenizer->add_eos()) {
    return Fail("the vocabulary adds EOS to every text; perplexity is not defined for it here");
  }
  // A regular file is mapped; a pipe (-f <(cmd), -f /dev/stdin) is read up to the cap.
  auto text = core::TextInput::Open(a.text_file, kMaxTextInputBytes);
  if (!text.has_value()) return Fail(text.error().message());
  const std::string_view body = text->text();
  const std::vector<std::int32_t> tokens = tokenizer->Encode(body, true, false);

  const int n_ctx_model = (*model)->config().n_ctx_train;
  int n_ctx = a.ctx;
  if (n_ctx_model > 0 && n_ctx > n_ctx_model) {
    if (!a.json) {
      std::fprintf(stderr, "airlock perplexity: --ctx %d exceeds the model's context; using %d\n",
                   n_ctx, n_ctx_model);
    }
    n_ctx = n_ctx_model;
  }

  std::optional<engine::LogitsFile> reference;
  if (!a.kl_divergence.empty()) {
    auto f = engine::LogitsFile::Open(a.kl_divergence);
    if (!f.has_value()) return Fail(f.error().message());
    if (f->header().n_vocab != static_cast<std::uint32_t>((*model)->config().n_vocab)) {
      return Fail("the saved logits are for a vocabulary of " +
                  std::to_string(f->header().n_vocab) + " tokens, this model has " +
                  std::to_string((*model)->config().n_vocab));
    }
    // The comparison uses the reference run's context and chunk count.
    n_ctx = static_cast<int>(f->header().n_ctx);
    reference = std::move(*f);
  }

  engine::SessionOptions so;
  so.n_ctx = n_ctx;
  so.kv_type = KvTypeFromFlag(a.kv_type);
  so.n_threads = a.threads;
  auto session = engine::Session::Create(**model, so);
  if (!session.has_value()) return Fail(session.error().message());

  engine::PerplexityOptions o;
  o.n_ctx = n_ctx;
  o.max_chunks = reference ? static_cast<int>(reference->header().n_chunks) : a.chunks;
  o.add_bos = tokenizer->add_bos() && tokenizer->bos() != engine::kNoToken;
  o.bos = tokenizer->bos();
  o.top_k = std::min(a.top_k, (*model)->config().n_vocab);
  if (reference) o.reference = &*reference;

  if (tokens.size() < 2 * static_cast<std::size_t>(n_ctx)) {
    return Fail("the text has " + std::to_string(tokens.size()) +
                " tokens; perplexity with a context of " + std::to_string(n_ctx) +
                " needs at least " + std::to_string(2 * n_ctx) +
                " (use a longer text or a smaller --ctx)");
  }
  const int chunks = engine::ChunkCount(tokens.size(), n_ctx, o.max_chunks);
  std::unique_ptr<engine::LogitsWriter> writer;
  if (!a.save_logits.empty() && tokens.size() >= 2 * static_cast<std::size_t>(n_ctx) &&
      chunks > 0) {
    engine::LogitsHeader h;
    h.n_vocab = static_cast<std::uint32_t>((*model)->config().n_vocab);
    h.n_ctx = static_cast<std::uint32_t>(n_ctx);
    h.n_chunks = static_cast<std::uint32_t>(chunks);
    h.top_k = static_cast<std::uint32_t>(o.top_k);
    h.flags = o.add_bos ? engine::kLogitsFlagBos : 0;
    h.bos = o.add_bos ? o.bos : -1;
    auto w = engine::LogitsWriter::Create(
        OutputPath(a.save_logits), h,
        std::span<const std::int32_t>(tokens.data(), static_cast<std::size_t>(n_ctx) * chunks));
    if (!w.has_value()) return Fail(w.error().message());
    writer = std::move(*w);
    o.save = writer.get();
  }

  if (!a.json) {
    std::printf("model %s (%s, %d-token vocabulary, %s kernels, %d threads)\n", a.model.c_str(),
                (*model)->config().architecture.c_str(), (*model)->config().n_vocab,
                (*session)->kernel_name(), (*session)->n_threads());
    std::printf("text %s: %zu tokens; %d chunks of %d tokens, scoring the last %d of each\n",
                a.text_file.c_str(), tokens.size(), chunks, n_ctx, n_ctx - 1 - n_ctx / 2);
    std::fflush(stdout);
  }
  const auto t0 = std::chrono::steady_clock::now();
  o.on_chunk = [&](int c, int total, const engine::Estimate& ppl) {
    if (tty) std::fprintf(stderr, "\r\033[K");
    if (!a.json) {
      std::printf("[%d/%d] PPL %.4f ± %.4f\n", c + 1, total, ppl.value, ppl.error);
      std::fflush(stdout);
    }
    if (tty && c + 1 < total) {
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const double eta = secs / (c + 1) * (total - c - 1);
      std::fprintf(stderr, "perplexity: chunk %d/%d, %.0f tokens/s, ETA %.0fs", c + 1, total,
                   (c + 1) * static_cast<double>(n_ctx) / secs, eta);
    }
  };
  auto result = engine::RunPerplexity(**session, tokens, o);
  if (tty) std::fprintf(stderr, "\r\033[K");
  if (!result.has_value()) return Fail(result.error().message());
  if (writer) {
    if (Status s = writer->Finish(); !s.ok()) return Fail(s.message());
  }
  const double tps =
      result->seconds > 0 ? static_cast<double>(result->tokens_evaluated) / result->seconds : 0;

  if (a.json) {
    Json j;
    j["model"] = a.model;
    j["text"] = a.text_file;
    j["tokens"] = tokens.size();
    j["n_ctx"] = result->n_ctx;
    j["chunks"] = result->chunks;
    j["tokens_scored"] = result->tokens_scored;
    j["ppl"] = EstimateJson(result->ppl);
    j["running_ppl"] = result->running_ppl;
    j["seconds"] = result->seconds;
    j["tokens_per_second"] = tps;
    j["threads"] = (*session)->n_threads();
    if (!a.save_logits.empty()) j["saved_logits"] = a.save_logits;
    if (result->has_kl) {
      j["kl_divergence"] = KlJson(result->kl);
      j["kl_divergence"]["reference_logits"] = a.kl_divergence;
    }
    std::printf("%s\n", j.dump(2, ' ', false, Json::error_handler_t::replace).c_str());
    return 0;
  }
  std::printf("Final estimate: PPL = %.4f ± %.5f  (%lld tokens scored, %.2f s, %.0f tokens/s)\n",
              result->ppl.value, result->ppl.error, static_cast<long long>(result->tokens_scored),
              result->seconds, tps);
  if (!a.save_logits.empty()) {
    std::printf("saved reference logits (top %d per position) to %s\n", o.top_k,
                a.save_logits.c_str());
  }
  if (result->has_kl) PrintKlTable(result->kl, a.kl_divergence, (*model)->config().n_vocab);
  return 0;
}

}  // namespace

void AddPerplexityCommand(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<PerplexityArgs>();
  CLI::App* cmd = app.add_subcommand(
      "perplexity", "Perplexity of a GGUF model on a text, and KL divergence against a reference");
  cmd->footer(
      "The text is tokenized once (with BOS as the vocabulary says), cut into consecutive chunks\n"
      "of --ctx tokens, BOS put in the first slot of each chunk, and only the second half of each\n"
      "chunk scored, as llama.cpp's perplexity tool does (docs/perplexity.md). The text needs at\n"
      "least 2 x --ctx tokens.\n"
      "Quantization quality: save the full-precision model's distributions, then compare:\n"
      "  airlock perplexity model-F16.gguf -f our-docs.txt --save-logits ref.logits\n"
      "  airlock perplexity model-Q4_K_M.gguf -f our-docs.txt --kl-divergence ref.logits\n"
      "Examples:\n"
      "  airlock perplexity model.gguf -f wiki.test.raw --ctx 512 --chunks 20\n"
      "  airlock perplexity model.gguf -f notes.txt --json\n"
      "Exit codes: 0 done; 1 error (unreadable model, text too short, mismatched logits file).\n");
  cmd->add_option("model", args->model, "GGUF model file")->required();
  cmd->add_option("-f,--file", args->text_file,
                  "Text file to score (a pipe works too: -f <(cmd); at most 256 MiB)")
      ->required();
  AddKvTypeOption(cmd, &args->kv_type);
  cmd->add_option("--ctx", args->ctx, "Chunk length in tokens (capped at the model's context)")
      ->check(CLI::Range(4, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--chunks", args->chunks, "Score at most this many chunks (-1: all)")
      ->capture_default_str();
  cmd->add_option("-t,--threads", args->threads, "Threads (0: all cores)")->capture_default_str();
  cmd->add_flag("--json", args->json, "Print one JSON object instead of text");
  auto* save = cmd->add_option("--save-logits", args->save_logits,
                               "Save this model's top-k log-probabilities to a file (reference)");
  auto* kl = cmd->add_option("--kl-divergence", args->kl_divergence,
                             "Compare against a file written by --save-logits");
  save->excludes(kl);
  cmd->add_option("--top-k", args->top_k,
                  "Tokens kept per position by --save-logits (the rest is one tail bucket)")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->callback([args, exit_code] { *exit_code = RunPerplexityCommand(*args); });
}

}  // namespace airlock::cli
