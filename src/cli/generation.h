// Shared pieces of `airlock run` and `airlock chat`: the generation flags, loading a model with
// its tokenizer and a session, turning a conversation into prompt tokens through the model's chat
// template (sandboxed; special tokens only from template text), and streaming a reply.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/chat_message.h"
#include "core/file.h"
#include "core/status.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/tokenizer.h"

namespace CLI {
class App;
}

namespace airlock::cli {

struct GenerationFlags {
  std::string model;
  std::string system;
  int n_predict = 256;
  int threads = 0;
  int ctx = 0;
  std::string kv_type = "auto";  // engine::ParseKvCacheType
  bool no_template = false;
  bool verbose = false;
  std::string require_signature;  // public key: refuse a model that does not verify
  engine::SamplerOptions sampling;
};

// Registers the model positional and the sampling/engine flags on `cmd`.
void AddGenerationFlags(CLI::App* cmd, GenerationFlags* flags);

// Registers `--kv-type` (auto, f16, f32, q8_0) on `cmd`, stored in `*kv_type` (run, chat,
// perplexity and serve share it).
void AddKvTypeOption(CLI::App* cmd, std::string* kv_type);
// The engine's cache type for a `--kv-type` value (CLI has checked it; anything else is kAuto).
engine::KvCacheType KvTypeFromFlag(const std::string& kv_type);

struct LoadedModel {
  std::unique_ptr<engine::Model> model;
  std::optional<engine::Tokenizer> tokenizer;
  std::unique_ptr<engine::Session> session;
};

// What LoadForGeneration reads: the model, and with --require-signature the key and MODEL.sig.
std::vector<std::string> GenerationInputs(const GenerationFlags& flags);

// Loads the model, its tokenizer and a session per `flags` (printing a summary to stderr when
// verbose). Errors: those of Model::Load, Tokenizer::FromGguf and Session::Create.
Result<LoadedModel> LoadForGeneration(const GenerationFlags& flags);

// Opens the model file once and, with a public key, copies it into sealed memory
// (PinnedFile::SealPrivateCopy) and verifies its OpenSSF model-signing signature (MODEL.sig beside
// it) by hashing that copy. Load the model from the returned file's descriptor: no write to the
// file after the check (rename, write in place, shared mapping) reaches what runs, and
// Unchanged() tells whether the file at the path changed. Errors: kNotFound, kInvalidArgument
// (not a regular file), kIo, kPermissionDenied naming what failed.
Result<core::PinnedFile> OpenCheckedModel(const std::string& model_path,
                                          const std::string& public_key);

// Prompt tokens for `messages`: the chat template when the model has one and !no_template (with a
// generation prompt), else the messages' text joined by blank lines with the vocabulary's BOS.
Result<std::vector<engine::TokenId>> EncodeConversation(
    const LoadedModel& m, const std::vector<core::ChatMessage>& messages, bool no_template);

// Whether a prompt of `prompt_tokens` gets a progress line: only when stderr is a terminal (never
// in CI logs or pipes) and the prompt takes more than one forward pass of `chunk` tokens.
bool WantPromptProgress(bool stderr_is_terminal, std::size_t prompt_tokens, int chunk);
// "prompt 2048/4096 tokens, 410 tok/s" (no rate before any time has passed).
std::string PromptProgressText(std::size_t done, std::size_t total, double seconds);

// Evaluates `prompt` at the session's position (in chunks of its max_batch) and returns the last
// token's logits. With WantPromptProgress(stderr is a TTY, ...) it draws PromptProgressText on
// stderr after each chunk, in place, and clears it at the end; stdout is never written.
// Errors: those of Session::Eval.
Result<std::span<const float>> EvalPrompt(LoadedModel& m, std::span<const engine::TokenId> prompt);

struct ReplyStats {
  int generated = 0;
  double seconds = 0;
  std::string stop_reason;
  std::string text;
};

// Samples up to n_predict tokens (negative: no limit) after `logits`, streaming text to stdout,
// stopping at an end-of-generation token or a full context. Errors: those of Session::Eval.
Result<ReplyStats> StreamReply(LoadedModel& m, engine::Sampler& sampler,
                               std::span<const float> logits, int n_predict);

}  // namespace airlock::cli
