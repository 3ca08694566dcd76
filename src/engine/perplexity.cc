#include "engine/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <numeric>

#include "core/bytes.h"
#include "engine/model.h"
#include "engine/tokenizer.h"

namespace airlock::engine {
namespace {

Status Corrupt(const std::string& name, const std::string& where, const std::string& detail) {
  return Status(StatusCode::kCorrupt, "engine: invalid saved-logits file at " + where + ": " +
                                          detail + " (" + name + ")");
}

// Standard error of a mean from sums: sqrt((E[x^2] - E[x]^2) / (n - 1)); 0 when undefined.
Estimate MeanAndError(double sum, double sum2, std::int64_t n) {
  if (n < 1) return {};
  const double mean = sum / static_cast<double>(n);
  double var = sum2 / static_cast<double>(n) - mean * mean;
  const double err = (var > 0 && n > 1) ? std::sqrt(var / static_cast<double>(n - 1)) : 0.0;
  return {mean, err};
}

// Linear interpolation between order statistics of sorted `v` at `fraction` in [0, 1].
double Percentile(const std::vector<float>& v, double fraction) {
  if (v.empty()) return 0;
  if (fraction <= 0) return v.front();
  if (fraction >= 1) return v.back();
  const double p = fraction * static_cast<double>(v.size() - 1);
  const std::size_t i = static_cast<std::size_t>(p);
  const double f = p - static_cast<double>(i);
  const std::size_t j = std::min(i + 1, v.size() - 1);
  return (1 - f) * v[i] + f * v[j];
}

constexpr double kPercentiles[] = {0, 0.01, 0.05, 0.10, 0.25, 0.50, 0.75, 0.90, 0.95, 0.99, 1};

// Log-probability as stored in saved-logits rows: float(logit - lse). Computing the model's values
// with the same expression makes KL(ref || ref) exactly 0.
inline float LogProb(float logit, double lse) {
  return static_cast<float>(static_cast<double>(logit) - lse);
}

void PutU32(std::vector<unsigned char>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<unsigned char>(v >> (8 * i)));
}
void PutF32(std::vector<unsigned char>& out, float f) {
  std::uint32_t v;
  std::memcpy(&v, &f, 4);
  PutU32(out, v);
}

}  // namespace

Estimate NllAccumulator::MeanNll() const { return MeanAndError(sum_, sum2_, count_); }

Estimate NllAccumulator::Perplexity() const {
  if (count_ == 0) return {};
  const Estimate m = MeanNll();
  const double ppl = std::exp(m.value);
  return {ppl, ppl * m.error};
}

double LogSumExp(std::span<const float> logits) {
  float max = logits[0];
  for (float v : logits) max = std::max(max, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - max);
  return static_cast<double>(max) + std::log(sum);
}

double TokenNll(std::span<const float> logits, std::int32_t token) {
  return LogSumExp(logits) - static_cast<double>(logits[static_cast<std::size_t>(token)]);
}

ReferenceRow MakeReferenceRow(std::span<const float> logits, std::int32_t correct, int top_k) {
  const int n = static_cast<int>(logits.size());
  const int k = std::clamp(top_k, 1, n);
  const double lse = LogSumExp(logits);
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  auto better = [&](std::int32_t a, std::int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), better);
  ReferenceRow row;
  row.correct = correct;
  row.correct_logprob = LogProb(logits[static_cast<std::size_t>(correct)], lse);
  row.ids.assign(order.begin(), order.begin() + k);
  row.logprobs.reserve(static_cast<std::size_t>(k));
  for (std::int32_t id : row.ids) row.logprobs.push_back(LogProb(logits[id], lse));
  // The tail is summed directly over the tokens outside the top k (in id order), not as
  // 1 - sum(top k), so a tiny tail keeps its precision; KlAccumulator::Add mirrors this.
  std::vector<char> in_top(static_cast<std::size_t>(n), 0);
  for (std::int32_t id : row.ids) in_top[id] = 1;
  double tail = 0;
  for (int i = 0; i < n; ++i) {
    if (!in_top[i]) tail += std::exp(static_cast<double>(LogProb(logits[i], lse)));
  }
  row.tail_mass = static_cast<float>(std::min(tail, 1.0));
  return row;
}

Result<double> KlAccumulator::Add(const ReferenceRow& ref, std::span<const float> logits) {
  const std::int64_t n = static_cast<std::int64_t>(logits.size());
  if (ref.correct < 0 || ref.correct >= n || ref.ids.empty() ||
      ref.ids.size() != ref.logprobs.size()) {
    return Status(StatusCode::kInvalidArgument,
                  "engine: reference row does not fit the vocabulary");
  }
  for (std::int32_t id : ref.ids) {
    if (id < 0 || id >= n) {
      return Status(StatusCode::kInvalidArgument,
                    "engine: reference token id " + std::to_string(id) + " outside the vocabulary");
    }
  }
  const double lse = LogSumExp(logits);
  std::vector<char> in_top(static_cast<std::size_t>(n), 0);
  double kld = 0;
  for (std::size_t j = 0; j < ref.ids.size(); ++j) {
    const std::int32_t id = ref.ids[j];
    in_top[id] = 1;
    const float p_log = ref.logprobs[j];
    const float q_log = LogProb(logits[id], lse);
    kld += std::exp(static_cast<double>(p_log)) * (static_cast<double>(p_log) - q_log);
  }
  if (ref.tail_mass > 0) {
    double q_tail = 0;
    for (std::int64_t i = 0; i < n; ++i) {
      if (!in_top[i]) q_tail += std::exp(static_cast<double>(LogProb(logits[i], lse)));
    }
    const double p = ref.tail_mass;
    const double q = std::max<double>(static_cast<float>(std::min(q_tail, 1.0)), 1e-45);
    kld += p * (std::log(p) - std::log(q));
  }
  // Rounding can leave -1e-9 where the distributions agree; KL is never negative.
  kld = std::max(kld, 0.0);

  const std::int32_t model_top =
      static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  same_top_ += model_top == ref.ids[0];
  sum_tail_ += ref.tail_mass;
  top_k_ = static_cast<int>(ref.ids.size());

  const double nll = -static_cast<double>(LogProb(logits[ref.correct], lse));
  const double nll_ref = -static_cast<double>(ref.correct_logprob);
  sum_nll_ += nll;
  sum_nll2_ += nll * nll;
  sum_nll_ref_ += nll_ref;
  sum_nll_ref2_ += nll_ref * nll_ref;
  sum_nll_cross_ += nll * nll_ref;
  sum_kld_ += kld;
  sum_kld2_ += kld * kld;
  const double dp = std::exp(-nll) - std::exp(-nll_ref);
  sum_dp_ += dp;
  sum_dp2_ += dp * dp;
  kld_values_.push_back(static_cast<float>(kld));
  delta_p_values_.push_back(static_cast<float>(dp));
  return kld;
}

KlSummary KlAccumulator::Summarize() const {
  KlSummary s;
  const std::int64_t n = count();
  s.positions = n;
  s.top_k = top_k_;
  if (n == 0) return s;
  const Estimate ln_ppl = MeanAndError(sum_nll_, sum_nll2_, n);
  const Estimate ln_ppl_ref = MeanAndError(sum_nll_ref_, sum_nll_ref2_, n);
  s.ppl = {std::exp(ln_ppl.value), std::exp(ln_ppl.value) * ln_ppl.error};
  s.ppl_ref = {std::exp(ln_ppl_ref.value), std::exp(ln_ppl_ref.value) * ln_ppl_ref.error};
  // Covariance of the two means (as the errors above are standard errors of means).
  const double dn = static_cast<double>(n);
  const double cov =
      n > 1 ? (sum_nll_cross_ / dn - (sum_nll_ / dn) * (sum_nll_ref_ / dn)) / (dn - 1) : 0.0;
  const double denom = ln_ppl.error * ln_ppl_ref.error;
  s.ln_ppl_correlation = denom > 0 ? cov / denom : 0.0;
  const double ratio_var =
      ln_ppl.error * ln_ppl.error + ln_ppl_ref.error * ln_ppl_ref.error - 2 * cov;
  s.ln_ppl_ratio = {ln_ppl.value - ln_ppl_ref.value, ratio_var > 0 ? std::sqrt(ratio_var) : 0.0};
  s.ppl_ratio = {std::exp(s.ln_ppl_ratio.value),
                 std::exp(s.ln_ppl_ratio.value) * s.ln_ppl_ratio.error};
  s.kld = MeanAndError(sum_kld_, sum_kld2_, n);
  const double top = static_cast<double>(same_top_) / dn;
  s.top1_agreement = {top, n > 1 ? std::sqrt(top * (1 - top) / (dn - 1)) : 0.0};
  s.delta_p = MeanAndError(sum_dp_, sum_dp2_, n);
  s.delta_p_rms = std::sqrt(sum_dp2_ / dn);
  s.mean_tail_mass = sum_tail_ / dn;
  std::vector<float> kl = kld_values_, dp = delta_p_values_;
  std::sort(kl.begin(), kl.end());
  std::sort(dp.begin(), dp.end());
  for (double f : kPercentiles) {
    s.kld_percentiles.emplace_back(f, Percentile(kl, f));
    s.delta_p_percentiles.emplace_back(f, Percentile(dp, f));
  }
  return s;
}

// ---------------------------------------------------------------------------------------------
// LogitsWriter

Result<std::unique_ptr<LogitsWriter>> LogitsWriter::Create(const std::string& path,
                                                           const LogitsHeader& header,
                                                           std::span<const std::int32_t> tokens) {
  if (header.n_ctx < 4 || header.n_vocab == 0 || header.n_chunks == 0 || header.top_k == 0 ||
      header.top_k > header.n_vocab ||
      tokens.size() != static_cast<std::size_t>(header.n_ctx) * header.n_chunks) {
    return Status(StatusCode::kInvalidArgument, "engine: inconsistent saved-logits header");
  }
  std::unique_ptr<LogitsWriter> w(new LogitsWriter());
  w->path_ = path;
  w->tmp_path_ = path + ".tmp";
  w->header_ = header;
  w->f_ = std::fopen(w->tmp_path_.c_str(), "wb");
  if (w->f_ == nullptr) {
    return Status(StatusCode::kIo,
                  "engine: cannot create " + w->tmp_path_ + ": " + std::strerror(errno));
  }
  std::vector<unsigned char> head;
  head.insert(head.end(), kLogitsMagic, kLogitsMagic + 8);
  PutU32(head, kLogitsVersion);
  PutU32(head, kLogitsHeaderBytes);
  PutU32(head, header.n_vocab);
  PutU32(head, header.n_ctx);
  PutU32(head, header.n_chunks);
  PutU32(head, header.top_k);
  PutU32(head, header.flags);
  PutU32(head, static_cast<std::uint32_t>(header.bos));
  PutU32(head, header.scored_per_chunk());
  PutU32(head, static_cast<std::uint32_t>(header.record_bytes()));
  head.resize(kLogitsHeaderBytes, 0);  // reserved, must be zero
  for (std::int32_t t : tokens) PutU32(head, static_cast<std::uint32_t>(t));
  if (std::fwrite(head.data(), 1, head.size(), w->f_) != head.size()) {
    return Status(StatusCode::kIo, "engine: write failed: " + w->tmp_path_);
  }
  return w;
}

LogitsWriter::~LogitsWriter() {
  if (f_ != nullptr) {
    std::fclose(f_);
    std::error_code ec;
    std::filesystem::remove(tmp_path_, ec);
  }
}

Status LogitsWriter::Append(const ReferenceRow& row) {
  if (f_ == nullptr) return Status(StatusCode::kInvalidArgument, "engine: writer is finished");
  if (row.ids.size() != header_.top_k || row.logprobs.size() != header_.top_k) {
    return Status(StatusCode::kInvalidArgument, "engine: saved-logits row has the wrong top-k");
  }
  std::vector<unsigned char> rec;
  rec.reserve(header_.record_bytes());
  PutU32(rec, static_cast<std::uint32_t>(row.correct));
  PutF32(rec, row.correct_logprob);
  PutF32(rec, row.tail_mass);
  for (std::int32_t id : row.ids) PutU32(rec, static_cast<std::uint32_t>(id));
  for (float lp : row.logprobs) PutF32(rec, lp);
  if (std::fwrite(rec.data(), 1, rec.size(), f_) != rec.size()) {
    return Status(StatusCode::kIo, "engine: write failed: " + tmp_path_);
  }
  ++rows_;
  return Status::Ok();
}

Status LogitsWriter::Finish() {
  if (f_ == nullptr) return Status(StatusCode::kInvalidArgument, "engine: writer is finished");
  const std::uint64_t want =
      static_cast<std::uint64_t>(header_.n_chunks) * header_.scored_per_chunk();
  const bool flushed = std::fflush(f_) == 0;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  std::error_code ec;
  if (rows_ != want) {
    std::filesystem::remove(tmp_path_, ec);
    return Status(StatusCode::kInvalidArgument, "engine: saved-logits file has " +
                                                    std::to_string(rows_) + " rows, expected " +
                                                    std::to_string(want));
  }
  if (!flushed || !closed) {
    std::filesystem::remove(tmp_path_, ec);
    return Status(StatusCode::kIo, "engine: write failed: " + tmp_path_);
  }
  std::filesystem::rename(tmp_path_, path_, ec);
  if (ec) return Status(StatusCode::kIo, "engine: cannot rename to " + path_ + ": " + ec.message());
  return Status::Ok();
}

// ---------------------------------------------------------------------------------------------
// LogitsFile

Result<LogitsFile> LogitsFile::Open(const std::string& path) {
  auto mapped = core::MappedFile::Open(path);
  if (!mapped.has_value()) return mapped.error();
  auto file = std::make_shared<core::MappedFile>(std::move(*mapped));
  auto parsed = Parse(file->bytes(), path);
  if (!parsed.has_value()) return parsed.error();
  parsed->file_ = std::move(file);
  return std::move(*parsed);
}

Result<LogitsFile> LogitsFile::Parse(std::span<const std::byte> bytes, std::string name) {
  core::ByteReader r(bytes);
  auto magic = r.Bytes(8);
  if (!magic || std::memcmp(magic->data(), kLogitsMagic, 8) != 0) {
    return Corrupt(name, "offset 0", "not an airlock saved-logits file (bad magic)");
  }
  auto version = r.U32(), header_bytes = r.U32(), n_vocab = r.U32(), n_ctx = r.U32(),
       n_chunks = r.U32(), top_k = r.U32(), flags = r.U32(), bos = r.U32(), scored = r.U32(),
       record = r.U32();
  if (!record) return Corrupt(name, "header", "truncated header");
  if (*version != kLogitsVersion) {
    return Status(StatusCode::kUnsupported, "engine: saved-logits file version " +
                                                std::to_string(*version) + " is not supported (" +
                                                name + ")");
  }
  if (*header_bytes != kLogitsHeaderBytes) return Corrupt(name, "header", "bad header size");
  if (bytes.size() < kLogitsHeaderBytes) return Corrupt(name, "header", "truncated header");
  for (std::size_t i = r.offset(); i < kLogitsHeaderBytes; ++i) {
    if (bytes[i] != std::byte{0}) return Corrupt(name, "header", "reserved bytes are not zero");
  }
  LogitsFile f;
  f.header_ = {*n_vocab, *n_ctx, *n_chunks, *top_k, *flags, static_cast<std::int32_t>(*bos)};
  const LogitsHeader& h = f.header_;
  if (h.n_vocab == 0 || h.n_vocab > (1u << 24)) return Corrupt(name, "header", "bad n_vocab");
  if (h.n_ctx < 4 || h.n_ctx > (1u << 24)) return Corrupt(name, "header", "bad n_ctx");
  if (h.n_chunks == 0) return Corrupt(name, "header", "no chunks");
  if (h.top_k == 0 || h.top_k > h.n_vocab) return Corrupt(name, "header", "bad top_k");
  if ((h.flags & ~kLogitsFlagBos) != 0) return Corrupt(name, "header", "unknown flags");
  if ((h.flags & kLogitsFlagBos) && (h.bos < 0 || static_cast<std::uint32_t>(h.bos) >= h.n_vocab)) {
    return Corrupt(name, "header", "BOS id outside the vocabulary");
  }
  if (*scored != h.scored_per_chunk()) return Corrupt(name, "header", "bad scored-per-chunk");
  if (*record != h.record_bytes()) return Corrupt(name, "header", "bad record size");
  std::uint64_t n_tokens, token_bytes, rows, row_bytes, end;
  if (!core::CheckedMul(h.n_ctx, h.n_chunks, &n_tokens) ||
      !core::CheckedMul(n_tokens, 4, &token_bytes) ||
      !core::CheckedMul(h.n_chunks, h.scored_per_chunk(), &rows) ||
      !core::CheckedMul(rows, h.record_bytes(), &row_bytes) ||
      !core::CheckedAdd(kLogitsHeaderBytes, token_bytes, &end) ||
      !core::CheckedAdd(end, row_bytes, &end)) {
    return Corrupt(name, "header", "sizes overflow");
  }
  if (end != bytes.size()) {
    return Corrupt(name, "header",
                   "header describes " + std::to_string(end) + " bytes but the file has " +
                       std::to_string(bytes.size()) +
                       (end > bytes.size() ? " (truncated?)" : " (trailing data)"));
  }
  f.bytes_ = bytes;
  f.rows_ = rows;
  f.tokens_offset_ = kLogitsHeaderBytes;
  f.rows_offset_ = kLogitsHeaderBytes + token_bytes;
  core::ByteReader tr(bytes, f.tokens_offset_);
  for (std::uint64_t i = 0; i < n_tokens; ++i) {
    const std::uint32_t t = *tr.U32();
    if (t >= h.n_vocab)
      return Corrupt(name, "token " + std::to_string(i), "id outside the vocabulary");
  }
  // Every row: ids in range and distinct, log-probs finite, <= 0 and not increasing, tail in
  // [0, 1], the correct token equal to the token that follows in its chunk.
  const std::uint32_t per_chunk = h.scored_per_chunk();
  const std::uint32_t first = h.n_ctx / 2;
  std::vector<std::int32_t> sorted_ids;
  auto bad_lp = [](float v) { return !std::isfinite(v) || v > 1e-3f; };
  for (std::uint64_t i = 0; i < rows; ++i) {
    const ReferenceRow row = f.Row(i);
    const std::string where = "row " + std::to_string(i);
    const std::uint64_t chunk = i / per_chunk, pos = first + i % per_chunk + 1;
    core::ByteReader tok(bytes, f.tokens_offset_ + 4 * (chunk * h.n_ctx + pos));
    if (static_cast<std::uint32_t>(row.correct) != *tok.U32()) {
      return Corrupt(name, where, "correct token does not match the stored tokens");
    }
    if (bad_lp(row.correct_logprob)) return Corrupt(name, where, "bad log-probability");
    if (!std::isfinite(row.tail_mass) || row.tail_mass < 0 || row.tail_mass > 1.0001f) {
      return Corrupt(name, where, "bad tail mass");
    }
    for (std::uint32_t j = 0; j < h.top_k; ++j) {
      const std::int32_t id = row.ids[j];
      if (id < 0 || static_cast<std::uint32_t>(id) >= h.n_vocab) {
        return Corrupt(name, where, "token id outside the vocabulary");
      }
      if (bad_lp(row.logprobs[j]) || (j > 0 && row.logprobs[j] > row.logprobs[j - 1])) {
        return Corrupt(name, where, "bad or unsorted log-probability");
      }
    }
    sorted_ids = row.ids;
    std::sort(sorted_ids.begin(), sorted_ids.end());
    if (std::adjacent_find(sorted_ids.begin(), sorted_ids.end()) != sorted_ids.end()) {
      return Corrupt(name, where, "repeated token id");
    }
  }
  return f;
}

std::vector<std::int32_t> LogitsFile::Tokens() const {
  const std::uint64_t n = static_cast<std::uint64_t>(header_.n_ctx) * header_.n_chunks;
  std::vector<std::int32_t> out(n);
  core::ByteReader r(bytes_, tokens_offset_);
  for (auto& t : out) t = static_cast<std::int32_t>(*r.U32());
  return out;
}

ReferenceRow LogitsFile::Row(std::uint64_t i) const {
  core::ByteReader r(bytes_, rows_offset_ + i * header_.record_bytes());
  auto f32 = [&r] {
    const std::uint32_t v = *r.U32();
    float f;
    std::memcpy(&f, &v, 4);
    return f;
  };
  ReferenceRow row;
  row.correct = static_cast<std::int32_t>(*r.U32());
  row.correct_logprob = f32();
  row.tail_mass = f32();
  row.ids.resize(header_.top_k);
  row.logprobs.resize(header_.top_k);
  for (auto& id : row.ids) id = static_cast<std::int32_t>(*r.U32());
  for (auto& lp : row.logprobs) lp = f32();
  return row;
}

// ---------------------------------------------------------------------------------------------
// Running

int ChunkCount(std::size_t n_tokens, int n_ctx, int max_chunks) {
  if (n_ctx <= 0) return 0;
  const std::size_t all = n_tokens / static_cast<std::size_t>(n_ctx);
  const std::size_t capped = max_chunks < 0 ? all : std::min<std::size_t>(all, max_chunks);
  return static_cast<int>(std::min<std::size_t>(capped, std::numeric_limits<int>::max()));
}

namespace {

struct RunInternals {
  const std::vector<ReferenceRow>* reference_rows = nullptr;
  std::vector<ReferenceRow>* collect = nullptr;
};

Result<PerplexityResult> RunImpl(Session& session, std::span<const std::int32_t> tokens,
                                 const PerplexityOptions& o, const RunInternals& in) {
  const int n_ctx = o.n_ctx;
  if (n_ctx < 4) {
    return Status(StatusCode::kInvalidArgument, "engine: perplexity needs a context of at least 4");
  }
  if (n_ctx > session.n_ctx()) {
    return Status(StatusCode::kInvalidArgument, "engine: --ctx " + std::to_string(n_ctx) +
                                                    " exceeds the session context " +
                                                    std::to_string(session.n_ctx()));
  }
  if (tokens.size() < 2 * static_cast<std::size_t>(n_ctx)) {
    return Status(StatusCode::kInvalidArgument,
                  "engine: the text has " + std::to_string(tokens.size()) +
                      " tokens; perplexity with a context of " + std::to_string(n_ctx) +
                      " needs at least " + std::to_string(2 * n_ctx) +
                      " (use a longer text or a smaller --ctx)");
  }
  if (o.add_bos && o.bos < 0) {
    return Status(StatusCode::kInvalidArgument, "engine: add_bos without a BOS token");
  }
  const int chunks = ChunkCount(tokens.size(), n_ctx, o.max_chunks);
  if (chunks <= 0) return Status(StatusCode::kInvalidArgument, "engine: no chunk to score");
  const int first = n_ctx / 2;
  const int scored = n_ctx - 1 - first;

  if (o.reference != nullptr) {
    const LogitsHeader& h = o.reference->header();
    std::string why;
    if (h.n_ctx != static_cast<std::uint32_t>(n_ctx)) {
      why = "context " + std::to_string(h.n_ctx) + " vs " + std::to_string(n_ctx);
    } else if (h.n_chunks != static_cast<std::uint32_t>(chunks)) {
      why = "chunks " + std::to_string(h.n_chunks) + " vs " + std::to_string(chunks);
    } else if (((h.flags & kLogitsFlagBos) != 0) != o.add_bos || (o.add_bos && h.bos != o.bos)) {
      why = "BOS handling differs";
    } else {
      const auto ref_tokens = o.reference->Tokens();
      if (!std::equal(ref_tokens.begin(), ref_tokens.end(), tokens.begin())) {
        why = "the text tokenizes differently (different text or tokenizer)";
      }
    }
    if (!why.empty()) {
      return Status(StatusCode::kInvalidArgument,
                    "engine: the saved logits do not match this run: " + why);
    }
  }

  PerplexityResult result;
  result.n_ctx = n_ctx;
  result.chunks = chunks;
  NllAccumulator nll;
  KlAccumulator kl;
  const bool want_kl = o.reference != nullptr || in.reference_rows != nullptr;
  std::vector<std::int32_t> chunk(static_cast<std::size_t>(n_ctx));
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t row_index = 0;
  constexpr int kSlice = 128;  // scored positions per Eval, bounds the logits buffer
  for (int c = 0; c < chunks; ++c) {
    const std::size_t start = static_cast<std::size_t>(c) * n_ctx;
    std::copy(tokens.begin() + start, tokens.begin() + start + n_ctx, chunk.begin());
    if (o.add_bos) chunk[0] = o.bos;
    session.Rewind(0);
    // Positions 0..first-1 only feed the KV cache; their logits are not needed.
    auto head = session.Eval(std::span<const std::int32_t>(chunk.data(), first), false);
    if (!head.has_value()) return head.error();
    for (int s = first; s < n_ctx; s += kSlice) {
      const int n = std::min(kSlice, n_ctx - s);
      auto logits = session.Eval(std::span<const std::int32_t>(chunk.data() + s, n), true);
      if (!logits.has_value()) return logits.error();
      const std::size_t vocab = logits->size() / static_cast<std::size_t>(n);
      for (int j = 0; j < n; ++j) {
        const int pos = s + j;
        if (pos >= n_ctx - 1) break;  // the last token has no successor in the chunk
        const std::int32_t target = tokens[start + pos + 1];
        const std::span<const float> row = logits->subspan(j * vocab, vocab);
        const ReferenceRow* ref = nullptr;
        ReferenceRow file_row;
        if (o.reference != nullptr) {
          file_row = o.reference->Row(row_index);
          ref = &file_row;
        } else if (in.reference_rows != nullptr) {
          ref = &(*in.reference_rows)[row_index];
        }
        if (ref != nullptr) {
          if (ref->correct != target) {
            return Status(StatusCode::kInvalidArgument, "engine: reference row does not match");
          }
          auto k = kl.Add(*ref, row);
          if (!k.has_value()) return k.error();
        }
        nll.Add(TokenNll(row, target));
        if (o.save != nullptr || in.collect != nullptr) {
          ReferenceRow made = MakeReferenceRow(row, target, o.top_k);
          if (o.save != nullptr) AIRLOCK_TRY(o.save->Append(made));
          if (in.collect != nullptr) in.collect->push_back(std::move(made));
        }
        ++row_index;
      }
    }
    result.tokens_evaluated += n_ctx;
    result.tokens_scored += scored;
    const Estimate running = nll.Perplexity();
    result.running_ppl.push_back(running.value);
    if (o.on_chunk) o.on_chunk(c, chunks, running);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  result.ppl = nll.Perplexity();
  if (want_kl) {
    result.has_kl = true;
    result.kl = kl.Summarize();
  }
  return result;
}

}  // namespace

Result<PerplexityResult> RunPerplexity(Session& session, std::span<const std::int32_t> tokens,
                                       const PerplexityOptions& options) {
  return RunImpl(session, tokens, options, {});
}

Result<KlSummary> ComparePerplexity(const std::string& reference_model, const std::string& model,
                                    const std::string& text, const CompareOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(auto ref, Model::Load(reference_model));
  AIRLOCK_ASSIGN_OR_RETURN(auto test, Model::Load(model));
  if (ref->config().n_vocab != test->config().n_vocab) {
    return Status(StatusCode::kInvalidArgument, "engine: the models have different vocabularies (" +
                                                    std::to_string(ref->config().n_vocab) + " vs " +
                                                    std::to_string(test->config().n_vocab) +
                                                    " tokens)");
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto tokenizer, Tokenizer::FromGguf(ref->gguf()));
  const std::vector<std::int32_t> tokens = tokenizer.Encode(text, true, false);
  PerplexityOptions o;
  o.n_ctx = std::min({options.n_ctx, ref->config().n_ctx_train, test->config().n_ctx_train});
  o.max_chunks = options.max_chunks;
  o.add_bos = tokenizer.add_bos() && tokenizer.bos() != kNoToken;
  o.bos = tokenizer.bos();
  o.top_k = options.top_k;
  SessionOptions so;
  so.n_ctx = o.n_ctx;
  so.n_threads = options.n_threads;
  std::vector<ReferenceRow> rows;
  {
    AIRLOCK_ASSIGN_OR_RETURN(auto session, Session::Create(*ref, so));
    RunInternals in;
    in.collect = &rows;
    AIRLOCK_TRY(RunImpl(*session, tokens, o, in).status());
  }
  AIRLOCK_ASSIGN_OR_RETURN(auto session, Session::Create(*test, so));
  RunInternals in;
  in.reference_rows = &rows;
  AIRLOCK_ASSIGN_OR_RETURN(PerplexityResult r, RunImpl(*session, tokens, o, in));
  return r.kl;
}

}  // namespace airlock::engine
