#include "engine/batch.h"

#include <algorithm>
#include <new>
#include <thread>

#include "engine/internal/workspace.h"

namespace airlock::engine {

struct Batch::State {
  const Model* model = nullptr;
  std::shared_ptr<internal::Workspace> ws;
  int n_ctx = 0;
  int n_sessions = 0;
  std::vector<float> logits;  // [session count][n_vocab]: row i holds item i's logits
};

Batch::~Batch() = default;

Result<std::unique_ptr<Batch>> Batch::Create(const Model& model, const BatchOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(
      const internal::EngineSetup setup,
      internal::ResolveSetup(model.config(), options.n_ctx, options.n_threads, options.max_rows,
                             options.kernels, options.exact_math, options.kv_type, options.sessions,
                             "batch"));
  const int n_ctx = setup.n_ctx;
  AIRLOCK_ASSIGN_OR_RETURN(
      auto ws, internal::Workspace::Create(model, *setup.kernels, setup.threads, setup.max_rows,
                                           n_ctx, setup.kv_type));
  std::unique_ptr<Batch> batch(new Batch());
  batch->s_ = std::make_unique<State>();
  batch->s_->model = &model;
  batch->s_->ws = std::move(ws);
  batch->s_->n_ctx = n_ctx;
  return batch;
}

Result<std::unique_ptr<Session>> Batch::NewSession(int n_ctx) {
  State& b = *s_;
  if (n_ctx < 0 || n_ctx > b.n_ctx) {
    return InvalidArgument("engine: a batch session's n_ctx (" + std::to_string(n_ctx) +
                           ") must be within the batch's " + std::to_string(b.n_ctx));
  }
  AIRLOCK_ASSIGN_OR_RETURN(
      auto state, internal::SessionState::Create(*b.model, b.ws, n_ctx > 0 ? n_ctx : b.n_ctx));
  state->batch = this;
  try {  // one logits row per session that can be in a step
    b.logits.resize(static_cast<std::size_t>(b.n_sessions + 1) * b.model->config().n_vocab);
  } catch (const std::bad_alloc&) {
    return LimitExceeded("engine: not enough memory for the logits of another batch session");
  }
  ++b.n_sessions;
  std::unique_ptr<Session> session(new Session());
  session->s_ = std::move(state);
  return session;
}

Status Batch::Step(std::span<BatchItem> items) {
  State& b = *s_;
  internal::Workspace& ws = *b.ws;
  const ModelConfig& c = b.model->config();
  if (items.empty()) return InvalidArgument("engine: a batch step needs at least one session");
  std::size_t total = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const BatchItem& item = items[i];
    if (item.session == nullptr || item.session->s_->batch != this) {
      return InvalidArgument("engine: batch item " + std::to_string(i) +
                             " is not a session of this batch");
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (items[j].session == item.session) {
        return InvalidArgument("engine: batch item " + std::to_string(i) +
                               " repeats the session of item " + std::to_string(j));
      }
    }
    const internal::SessionState& s = *item.session->s_;
    if (item.tokens.empty()) {
      return InvalidArgument("engine: batch item " + std::to_string(i) + " has no tokens");
    }
    if (item.tokens.size() > static_cast<std::size_t>(s.n_ctx - s.pos)) {
      return LimitExceeded("engine: context full at position " + std::to_string(s.pos) + ": " +
                           std::to_string(item.tokens.size()) +
                           " more tokens do not fit in n_ctx " + std::to_string(s.n_ctx));
    }
    for (std::int32_t t : item.tokens) {
      if (t < 0 || t >= c.n_vocab) {
        return InvalidArgument("engine: token id " + std::to_string(t) +
                               " is outside the vocabulary (" + std::to_string(c.n_vocab) + ")");
      }
    }
    total += item.tokens.size();
  }
  if (total > static_cast<std::size_t>(ws.max_rows)) {
    return InvalidArgument("engine: a batch step of " + std::to_string(total) +
                           " tokens exceeds max_rows " + std::to_string(ws.max_rows));
  }
  const std::size_t vocab = c.n_vocab;
  ws.rows.clear();
  ws.out_rows.clear();
  for (const BatchItem& item : items) {
    internal::SessionState& s = *item.session->s_;
    for (std::size_t t = 0; t < item.tokens.size(); ++t) {
      ws.rows.push_back({&s, s.pos + static_cast<int>(t), item.tokens[t]});
    }
    if (item.want_logits) ws.out_rows.push_back(static_cast<int>(ws.rows.size()) - 1);
  }
  // The logits of the items that want them come out consecutively; spread them to row i.
  ws.Forward(b.logits.data());
  int o = static_cast<int>(ws.out_rows.size());
  for (std::size_t i = items.size(); i-- > 0;) {
    if (!items[i].want_logits) continue;
    --o;
    if (static_cast<std::size_t>(o) != i) {
      std::copy_n(b.logits.data() + o * vocab, vocab, b.logits.data() + i * vocab);
    }
  }
  for (const BatchItem& item : items) {
    item.session->s_->pos += static_cast<int>(item.tokens.size());
  }
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i].logits = items[i].want_logits
                          ? std::span<const float>(b.logits.data() + i * vocab, vocab)
                          : std::span<const float>();
  }
  return Status::Ok();
}

int Batch::max_rows() const { return s_->ws->max_rows; }
int Batch::n_ctx() const { return s_->n_ctx; }
int Batch::n_threads() const { return s_->ws->pool->size(); }
const char* Batch::kernel_name() const { return s_->ws->k->name; }

}  // namespace airlock::engine
