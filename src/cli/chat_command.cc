// `airlock chat MODEL.gguf`: interactive multi-turn chat with the model's own chat template.
// Each turn re-renders the conversation, keeps the KV cache for the prefix that did not change,
// and evaluates only the new tokens; tokens/s is printed after each reply. Commands: /reset
// (forget the conversation), /exit (or end of input).
#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/exit_codes.h"
#include "cli/generation.h"
#include "cli/sandboxing.h"

namespace airlock::cli {
namespace {

// A message longer than this is refused (no context holds it), so that an endless line on
// standard input cannot fill memory.
constexpr std::size_t kMaxLineBytes = std::size_t{1} << 20;

enum class LineRead { kLine, kEnd, kTooLong };

// std::getline with a cap: reads up to '\n' or the end of input, keeping at most `max_bytes`.
LineRead ReadLineBounded(std::istream& in, std::string& line, std::size_t max_bytes) {
  line.clear();
  for (int c = in.get(); c != std::char_traits<char>::eof(); c = in.get()) {
    if (c == '\n') return LineRead::kLine;
    if (line.size() == max_bytes) return LineRead::kTooLong;
    line.push_back(static_cast<char>(c));
  }
  return line.empty() ? LineRead::kEnd : LineRead::kLine;
}

int RunChat(const GenerationFlags& flags) {
  if (!EnterSandbox("chat", GenerationInputs(flags))) return kExitError;
  auto loaded = LoadForGeneration(flags);
  if (!loaded) {
    std::fprintf(stderr, "airlock chat: %s\n", loaded.error().ToString().c_str());
    return kExitError;
  }
  std::vector<core::ChatMessage> messages;
  auto reset = [&] {
    messages.clear();
    if (!flags.system.empty()) {
      messages.push_back({"system", flags.system, "", ""});
    }
    loaded->session->Rewind(0);
  };
  reset();
  std::vector<engine::TokenId> in_cache;  // the tokens the KV cache holds, in order
  std::fprintf(stderr,
               "airlock chat: type a message; /reset clears the conversation, /exit quits.\n");
  std::string line;
  while (true) {
    std::fprintf(stderr, "> ");
    const LineRead read = ReadLineBounded(std::cin, line, kMaxLineBytes);
    if (read == LineRead::kTooLong) {
      std::fprintf(stderr, "\nairlock chat: a line of more than %zu bytes; stopping\n",
                   kMaxLineBytes);
      return kExitError;
    }
    if (read == LineRead::kEnd || line == "/exit") break;
    if (line.empty()) continue;
    if (line == "/reset") {
      reset();
      in_cache.clear();
      continue;
    }
    messages.push_back({"user", line, "", ""});
    auto tokens = EncodeConversation(*loaded, messages, flags.no_template);
    if (!tokens || tokens->empty()) {
      std::fprintf(stderr, "airlock chat: %s\n",
                   tokens ? "empty prompt" : tokens.error().ToString().c_str());
      messages.pop_back();
      continue;
    }
    // Reuse the cached prefix; evaluate at least the last token to get fresh logits.
    std::size_t keep = 0;
    while (keep < in_cache.size() && keep < tokens->size() && in_cache[keep] == (*tokens)[keep])
      ++keep;
    if (keep == tokens->size()) --keep;
    loaded->session->Rewind(static_cast<int>(keep));
    in_cache.resize(keep);
    const std::span<const engine::TokenId> fresh(tokens->data() + keep, tokens->size() - keep);
    if (fresh.size() >
        static_cast<std::size_t>(loaded->session->n_ctx() - loaded->session->position())) {
      std::fprintf(
          stderr,
          "airlock chat: the conversation no longer fits in the context (%d tokens); /reset\n",
          loaded->session->n_ctx());
      messages.pop_back();
      continue;
    }
    engine::Sampler sampler(flags.sampling, loaded->model->config().n_vocab);
    for (engine::TokenId t : *tokens) sampler.Accept(t);
    const auto t0 = std::chrono::steady_clock::now();
    auto logits = EvalPrompt(*loaded, fresh);
    if (!logits) {
      std::fprintf(stderr, "airlock chat: %s\n", logits.error().ToString().c_str());
      return kExitError;
    }
    const double pp_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    in_cache.insert(in_cache.end(), fresh.begin(), fresh.end());
    auto reply = StreamReply(*loaded, sampler, *logits, flags.n_predict);
    if (!reply) {
      std::fprintf(stderr, "airlock chat: %s\n", reply.error().ToString().c_str());
      return kExitError;
    }
    // The generated tokens are in the cache too, but the reply re-tokenized inside the next
    // rendering may split differently: only the prompt part counts as the reusable prefix.
    messages.push_back({"assistant", reply->text, "", ""});
    std::fprintf(
        stderr, "[%zu new prompt tokens, %.1f tok/s; %d generated, %.1f tok/s; stop: %s]\n",
        fresh.size(), fresh.size() / pp_s, reply->generated,
        reply->generated > 0 ? reply->generated / reply->seconds : 0.0, reply->stop_reason.c_str());
  }
  return 0;
}

}  // namespace

void AddChatCommand(CLI::App& app, int* exit_code) {
  auto flags = std::make_shared<GenerationFlags>();
  CLI::App* cmd =
      app.add_subcommand("chat", "Chat with a GGUF model in the terminal (built-in CPU engine)");
  cmd->footer(
      "Example:\n  airlock chat qwen2.5-0.5b-instruct-q4_k_m.gguf --system \"You are terse.\" "
      "--temp 0.7\n"
      "Type /reset to start over, /exit or Ctrl-D to quit.");
  AddGenerationFlags(cmd, flags.get());
  flags->n_predict = -1;
  cmd->callback([flags, exit_code] { *exit_code = RunChat(*flags); });
}

}  // namespace airlock::cli
