// Perplexity and KL divergence of a model on a token sequence, computed the way llama.cpp's
// perplexity tool does (docs/perplexity.md): consecutive chunks of n_ctx tokens, BOS in the first
// slot of each chunk, only the second half of each chunk scored. The reference model's
// distributions can be saved to a compact "saved-logits" file (top-k log-probs) and a second
// model compared against it (mean KL divergence, top-1 agreement, change in the correct token's
// probability). Saved-logits files are untrusted input: LogitsFile validates every field.
// Thread-safety: the accumulators and LogitsFile are plain values (one thread at a time);
// RunPerplexity drives one Session.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/file.h"
#include "core/status.h"
#include "engine/session.h"

namespace airlock::engine {

// ---------------------------------------------------------------------------------------------
// Statistics

// A mean with its standard error: sqrt((E[x^2] - E[x]^2) / (n - 1)).
struct Estimate {
  double value = 0;
  double error = 0;
};

// Running negative log-likelihood statistics: PPL = exp(mean NLL), error = PPL * stderr(NLL).
class NllAccumulator {
 public:
  void Add(double nll) {
    sum_ += nll;
    sum2_ += nll * nll;
    ++count_;
  }
  std::int64_t count() const { return count_; }
  double sum() const { return sum_; }
  double sum2() const { return sum2_; }
  Estimate MeanNll() const;
  Estimate Perplexity() const;  // {exp(mean), exp(mean) * stderr}; {0,0} when empty

 private:
  double sum_ = 0, sum2_ = 0;
  std::int64_t count_ = 0;
};

// log(sum(exp(logits))) in double, numerically stable. `logits` must not be empty.
double LogSumExp(std::span<const float> logits);
// -log softmax(logits)[token]. `token` must be in range.
double TokenNll(std::span<const float> logits, std::int32_t token);

// What the reference model predicted at one scored position, as stored in a saved-logits file.
struct ReferenceRow {
  std::int32_t correct = 0;       // the token that actually follows
  float correct_logprob = 0;      // log p_ref(correct)
  float tail_mass = 0;            // 1 - sum of the top-k probabilities (>= 0)
  std::vector<std::int32_t> ids;  // top-k token ids, most probable first
  std::vector<float> logprobs;    // their log-probabilities
};

// Builds the row for one position from full logits. top_k is clamped to [1, logits.size()].
ReferenceRow MakeReferenceRow(std::span<const float> logits, std::int32_t correct, int top_k);

// Summary of a quantized (or any other) model against a reference on the same tokens.
struct KlSummary {
  std::int64_t positions = 0;
  Estimate ppl;           // of the model under test
  Estimate ppl_ref;       // of the reference (from the saved correct-token log-probs)
  Estimate ln_ppl_ratio;  // mean ln(PPL/PPL_ref), error includes the covariance
  Estimate ppl_ratio;     // exp(ln_ppl_ratio)
  double ln_ppl_correlation = 0;
  Estimate kld;             // mean KL(ref || model) in nats
  Estimate top1_agreement;  // fraction of positions with the same most probable token
  Estimate delta_p;         // mean of p_model(correct) - p_ref(correct)
  double delta_p_rms = 0;
  int top_k = 0;  // of the reference rows; == n_vocab means exact KL
  // Mean probability the reference put outside its stored top-k tokens: how far the KL (a lower
  // bound when top_k < n_vocab) can be from the full KL.
  double mean_tail_mass = 0;
  // Percentiles (0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 100) of per-position KL and of delta p,
  // linear interpolation between order statistics.
  std::vector<std::pair<double, double>> kld_percentiles;
  std::vector<std::pair<double, double>> delta_p_percentiles;
};

// Accumulates KL divergence statistics position by position.
class KlAccumulator {
 public:
  // KL(ref || model) over the partition {each top-k token, all other tokens together}: exact when
  // the reference row holds the whole vocabulary (or its tail mass is 0), otherwise a lower bound
  // of the full KL (log-sum inequality). Returns the position's KL. `logits` are the model's.
  // Errors: kInvalidArgument when an id is outside `logits`.
  Result<double> Add(const ReferenceRow& ref, std::span<const float> logits);
  std::int64_t count() const { return static_cast<std::int64_t>(kld_values_.size()); }
  KlSummary Summarize() const;

 private:
  double sum_nll_ = 0, sum_nll2_ = 0, sum_nll_ref_ = 0, sum_nll_ref2_ = 0, sum_nll_cross_ = 0;
  double sum_kld_ = 0, sum_kld2_ = 0, sum_dp_ = 0, sum_dp2_ = 0, sum_tail_ = 0;
  std::int64_t same_top_ = 0;
  int top_k_ = 0;
  std::vector<float> kld_values_, delta_p_values_;
};

// ---------------------------------------------------------------------------------------------
// Saved-logits file (format: docs/perplexity.md, "Saved-logits file")

inline constexpr char kLogitsMagic[8] = {'A', 'I', 'R', 'L', 'O', 'G', 'I', 'T'};
inline constexpr std::uint32_t kLogitsVersion = 1;
inline constexpr std::uint32_t kLogitsHeaderBytes = 64;
inline constexpr int kDefaultTopK = 64;
inline constexpr std::uint32_t kLogitsFlagBos = 1;  // BOS replaced the first token of each chunk

struct LogitsHeader {
  std::uint32_t n_vocab = 0;
  std::uint32_t n_ctx = 0;
  std::uint32_t n_chunks = 0;
  std::uint32_t top_k = 0;
  std::uint32_t flags = 0;
  std::int32_t bos = -1;
  std::uint32_t scored_per_chunk() const { return n_ctx - 1 - n_ctx / 2; }
  std::uint64_t record_bytes() const { return 12 + 8ull * top_k; }
};

// Writes a saved-logits file (through a temporary file renamed at Finish).
class LogitsWriter {
 public:
  // Errors: kInvalidArgument (inconsistent header or token count), kIo.
  static Result<std::unique_ptr<LogitsWriter>> Create(const std::string& path,
                                                      const LogitsHeader& header,
                                                      std::span<const std::int32_t> tokens);
  ~LogitsWriter();
  // Rows in order: chunk by chunk, scored positions first..n_ctx-2. Errors: kIo,
  // kInvalidArgument (row with the wrong k).
  Status Append(const ReferenceRow& row);
  // Checks the row count, flushes and renames into place. Errors: kIo, kInvalidArgument.
  Status Finish();

 private:
  LogitsWriter() = default;
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  LogitsHeader header_;
  std::uint64_t rows_ = 0;
};

// A validated, memory-mapped saved-logits file.
class LogitsFile {
 public:
  // Errors: kNotFound/kIo (file), kCorrupt (bad magic, sizes that do not match the file size,
  // ids out of range, non-finite or impossible values), kUnsupported (a newer version).
  static Result<LogitsFile> Open(const std::string& path);
  // Validates `bytes` (must outlive the result); used by Open and the fuzz target.
  static Result<LogitsFile> Parse(std::span<const std::byte> bytes, std::string name = "<memory>");

  const LogitsHeader& header() const { return header_; }
  std::uint64_t rows() const { return rows_; }
  std::vector<std::int32_t> Tokens() const;
  // Row `i` (0 <= i < rows()); validated at Parse, so no error here.
  ReferenceRow Row(std::uint64_t i) const;

 private:
  std::shared_ptr<core::MappedFile> file_;
  std::span<const std::byte> bytes_;
  LogitsHeader header_;
  std::uint64_t rows_ = 0;
  std::uint64_t tokens_offset_ = 0, rows_offset_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Running a model over text

struct PerplexityOptions {
  int n_ctx = 512;      // chunk length; clamped by the caller to the session's context
  int max_chunks = -1;  // -1: all full chunks
  bool add_bos = true;  // put BOS in the first slot of each chunk (llama.cpp: the vocab's add_bos)
  std::int32_t bos = -1;
  int top_k = kDefaultTopK;               // for saving
  LogitsWriter* save = nullptr;           // when set, every scored row is appended
  const LogitsFile* reference = nullptr;  // when set, KL statistics against it
  // Called after every chunk (chunk index from 0, total chunks, running PPL so far).
  std::function<void(int, int, const Estimate&)> on_chunk;
};

struct PerplexityResult {
  int n_ctx = 0;
  int chunks = 0;
  std::int64_t tokens_scored = 0;
  std::int64_t tokens_evaluated = 0;
  Estimate ppl;
  std::vector<double> running_ppl;  // after each chunk
  double seconds = 0;               // forward passes + scoring
  bool has_kl = false;
  KlSummary kl;
};

// Number of chunks for `n_tokens` tokens: min(max_chunks, n_tokens / n_ctx).
int ChunkCount(std::size_t n_tokens, int n_ctx, int max_chunks);

// Scores `tokens` (already tokenized, BOS included as the tokenizer adds it) with `session`.
// Errors: kInvalidArgument (n_ctx < 4 or above the session's context, fewer than 2 * n_ctx tokens
// as llama.cpp requires, a reference file whose vocabulary, context, chunk count or tokens differ
// from this run), errors of Session::Eval.
Result<PerplexityResult> RunPerplexity(Session& session, std::span<const std::int32_t> tokens,
                                       const PerplexityOptions& options);

// The quantization-quality comparison for `airlock assess`: tokenizes `text` with the reference
// model's tokenizer, runs both models over it (same chunks) and returns the KL summary (with both
// perplexities). No file is written. Errors: those of Model::Load, Session::Create,
// RunPerplexity; kInvalidArgument when the two vocabularies differ in size.
struct CompareOptions {
  int n_ctx = 512;
  int max_chunks = -1;
  int n_threads = 0;
  int top_k = kDefaultTopK;
};
Result<KlSummary> ComparePerplexity(const std::string& reference_model, const std::string& model,
                                    const std::string& text, const CompareOptions& options = {});

}  // namespace airlock::engine
