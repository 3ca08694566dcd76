// Session: one sequence over a Model, on its own workspace (engine/internal/workspace.h holds
// the forward pass every architecture shares).
#include "engine/session.h"

#include <algorithm>
#include <cctype>
#include <new>
#include <string>

#include "engine/internal/workspace.h"

namespace airlock::engine {

const char* KvCacheTypeName(KvCacheType type) {
  switch (type) {
    case KvCacheType::kF32:
      return "f32";
    case KvCacheType::kF16:
      return "f16";
    case KvCacheType::kQ8_0:
      return "q8_0";
    case KvCacheType::kAuto:
      break;
  }
  return "auto";
}

std::optional<KvCacheType> ParseKvCacheType(std::string_view name) {
  std::string lower(name);
  for (char& ch : lower) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  for (KvCacheType t :
       {KvCacheType::kAuto, KvCacheType::kF32, KvCacheType::kF16, KvCacheType::kQ8_0}) {
    if (lower == KvCacheTypeName(t)) return t;
  }
  return std::nullopt;
}

std::uint64_t KvCacheBytesPerToken(const ModelConfig& config, KvCacheType type) {
  const TensorType t = internal::KvTensorType(type, /*exact_math=*/false);
  const internal::KvShape shape = internal::KvShapeOf(config);
  return static_cast<std::uint64_t>(config.n_layer) *
         (internal::KvRowBytes(t, shape.k_width) + internal::KvRowBytes(t, shape.v_width));
}

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::Create(const Model& model,
                                                 const SessionOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(
      const internal::EngineSetup setup,
      internal::ResolveSetup(model.config(), options.n_ctx, options.n_threads, options.max_batch,
                             options.kernels, options.exact_math, options.kv_type, /*sessions=*/1,
                             "session"));
  const int n_ctx = setup.n_ctx;
  AIRLOCK_ASSIGN_OR_RETURN(
      auto ws, internal::Workspace::Create(model, *setup.kernels, setup.threads, setup.max_rows,
                                           n_ctx, setup.kv_type));
  AIRLOCK_ASSIGN_OR_RETURN(
      auto state, internal::SessionState::Create(model, std::shared_ptr(std::move(ws)), n_ctx));
  std::unique_ptr<Session> session(new Session());
  session->s_ = std::move(state);
  return session;
}

Result<std::span<const float>> Session::Eval(
    std::span<const std::int32_t> tokens, bool all_logits,
    const std::function<void(std::size_t done, std::size_t total)>& progress) {
  internal::SessionState& s = *s_;
  internal::Workspace& ws = *s.ws;
  if (tokens.empty()) return InvalidArgument("engine: Eval needs at least one token");
  if (tokens.size() > static_cast<std::size_t>(s.n_ctx - s.pos)) {
    return LimitExceeded("engine: context full at position " + std::to_string(s.pos) + ": " +
                         std::to_string(tokens.size()) + " more tokens do not fit in n_ctx " +
                         std::to_string(s.n_ctx));
  }
  for (std::int32_t t : tokens) {
    if (t < 0 || t >= s.c->n_vocab) {
      return InvalidArgument("engine: token id " + std::to_string(t) +
                             " is outside the vocabulary (" + std::to_string(s.c->n_vocab) + ")");
    }
  }
  const std::size_t vocab = s.c->n_vocab;
  if (all_logits) {
    try {
      s.all_logits.resize(tokens.size() * vocab);
    } catch (const std::bad_alloc&) {
      return LimitExceeded("engine: not enough memory for the logits of every token");
    }
  }
  for (std::size_t start = 0; start < tokens.size(); start += ws.max_rows) {
    const int n = static_cast<int>(std::min<std::size_t>(ws.max_rows, tokens.size() - start));
    const bool last_chunk = start + n == tokens.size();
    float* out = all_logits ? s.all_logits.data() + start * vocab : s.logits.data();
    if (!all_logits && !last_chunk) out = nullptr;  // only the last token's logits are returned
    ws.rows.clear();
    ws.out_rows.clear();
    for (int i = 0; i < n; ++i) {
      ws.rows.push_back({&s, s.pos + i, tokens[start + i]});
      if (all_logits) ws.out_rows.push_back(i);
    }
    if (out != nullptr && !all_logits) ws.out_rows.push_back(n - 1);
    ws.Forward(out);
    s.pos += n;
    if (progress) progress(start + n, tokens.size());
  }
  if (all_logits) return std::span<const float>(s.all_logits);
  return std::span<const float>(s.logits);
}

int Session::position() const { return s_->pos; }
int Session::n_ctx() const { return s_->n_ctx; }
int Session::n_threads() const { return s_->ws->pool->size(); }
int Session::max_batch() const { return s_->ws->max_rows; }
void Session::Rewind(int position) { s_->pos = std::clamp(position, 0, s_->pos); }
const char* Session::kernel_name() const { return s_->ws->k->name; }
KvCacheType Session::kv_type() const {
  switch (s_->kv.type) {
    case TensorType::kF32:
      return KvCacheType::kF32;
    case TensorType::kQ8_0:
      return KvCacheType::kQ8_0;
    default:
      return KvCacheType::kF16;
  }
}
std::uint64_t Session::kv_cache_bytes() const { return s_->kv.k.size() + s_->kv.v.size(); }

}  // namespace airlock::engine
