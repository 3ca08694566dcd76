// The forward pass shared by the llama, qwen2 and qwen3 architectures: pre-RMSNorm blocks with
// GQA self-attention (RoPE NORM or NEOX, optional q/k/v biases, optional per-head q/k RMS norm)
// and a SwiGLU feed-forward, then the final norm and the output projection. It runs over a list
// of rows (internal/session_state.h) that may belong to several sessions: the matrix products
// take every row at once, while RoPE, the KV-cache writes and attention are per row against the
// row's own session.
#include "engine/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <system_error>
#include <thread>

#include "core/bytes.h"
#include "engine/internal/session_state.h"
#include "engine/internal/weights.h"

namespace airlock::engine {

namespace internal {

namespace {

void RmsNorm(const float* in, float* out, std::int64_t n, const float* weight, float eps) {
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(in[i]) * in[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] * scale * weight[i];
}

// Floats of one layer's K (or V) cache of a dense session: [n_ctx][kv_dim].
std::size_t LayerCacheFloats(const SessionState& s, std::int64_t kv_dim) {
  return static_cast<std::size_t>(s.n_ctx) * static_cast<std::size_t>(kv_dim);
}

}  // namespace

Result<std::unique_ptr<Workspace>> Workspace::Create(const Model& model, const Kernels& kernels,
                                                     int n_threads, int max_rows, int max_ctx) {
  const ModelConfig& c = model.config();
  auto ws = std::make_unique<Workspace>();
  ws->model = &model;
  ws->c = &c;
  ws->w = &model.weights();
  ws->k = &kernels;
  ws->max_rows = max_rows;
  ws->max_ctx = max_ctx;
  const std::int64_t d = c.n_embd, b = max_rows;
  ws->q_dim = std::int64_t{c.n_head} * c.head_dim;
  ws->kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
  try {
    ws->pool = std::make_unique<ThreadPool>(n_threads);
    if (c.moe.n_expert > 0) return ws;  // expert architectures: ExpertForward owns the buffers
    ws->x.resize(b * d);
    ws->xn.resize(b * d);
    ws->tmp.resize(b * d);
    ws->q.resize(b * ws->q_dim);
    ws->attn.resize(b * ws->q_dim);
    ws->kk.resize(b * ws->kv_dim);
    ws->vv.resize(b * ws->kv_dim);
    ws->gate.resize(b * c.n_ff);
    ws->up.resize(b * c.n_ff);
    ws->scores.resize(static_cast<std::size_t>(ws->pool->size()) * max_ctx);
    ws->act.Reserve(max_rows, std::max<std::int64_t>({d, ws->q_dim, c.n_ff}));
    ws->rows.reserve(max_rows);
    ws->out_rows.reserve(max_rows);
    const int half = c.n_rot / 2;
    ws->inv_freq.resize(half);
    const auto& factors = model.weights().rope_freqs;
    for (int j = 0; j < half; ++j) {
      double f = std::pow(static_cast<double>(c.rope_base), -2.0 * j / c.n_rot) * c.rope_freq_scale;
      if (!factors.empty()) f /= factors[j];
      ws->inv_freq[j] = f;
    }
    ws->rope_cos.resize(static_cast<std::size_t>(max_rows) * half);
    ws->rope_sin.resize(static_cast<std::size_t>(max_rows) * half);
  } catch (const std::bad_alloc&) {
    return LimitExceeded("engine: not enough memory for the buffers of " +
                         std::to_string(max_rows) + " rows per forward pass");
  } catch (const std::system_error& e) {
    return Internal(std::string("engine: cannot start worker threads: ") + e.what());
  }
  return ws;
}

Status CheckKvCacheSize(const ModelConfig& c, int n_ctx) {
  std::uint64_t cache_floats = 0;
  if (!core::CheckedMul(static_cast<std::uint64_t>(c.n_layer) * n_ctx,
                        static_cast<std::uint64_t>(c.n_head_kv) * c.head_dim, &cache_floats) ||
      cache_floats > (std::uint64_t{1} << 36) / 8) {
    return LimitExceeded("engine: the KV cache for n_ctx " + std::to_string(n_ctx) +
                         " would exceed 64 GiB; use a smaller context");
  }
  return {};
}

Result<EngineSetup> ResolveSetup(const ModelConfig& c, int n_ctx, int n_threads, int max_rows,
                                 const Kernels* kernels, bool exact_math, const char* what) {
  if (n_ctx < 0 || n_threads < 0 || max_rows < 0) {
    return InvalidArgument(std::string("engine: bad ") + what + " options: negative value");
  }
  EngineSetup setup;
  setup.n_ctx = n_ctx > 0 ? n_ctx : std::min(c.n_ctx_train, 4096);
  if (setup.n_ctx > (1 << 20)) {
    return InvalidArgument(std::string("engine: bad ") + what + " options: n_ctx above 1M");
  }
  setup.max_rows = std::clamp(max_rows > 0 ? max_rows : 256, 1, 4096);
  setup.threads = n_threads > 0
                      ? n_threads
                      : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  setup.threads = std::min(setup.threads, 256);
  setup.kernels = kernels != nullptr ? kernels : exact_math ? &ExactKernels() : &BestKernels();
  // Check the cache size before allocating the workspace (SessionState::Create checks again for
  // each session's own n_ctx).
  AIRLOCK_TRY(CheckKvCacheSize(c, setup.n_ctx));
  return setup;
}

Result<std::unique_ptr<SessionState>> SessionState::Create(const Model& model,
                                                           std::shared_ptr<Workspace> ws,
                                                           int n_ctx) {
  const ModelConfig& c = model.config();
  auto s = std::make_unique<SessionState>();
  s->model = &model;
  s->c = &c;
  s->ws = std::move(ws);
  s->n_ctx = n_ctx;
  AIRLOCK_TRY(CheckKvCacheSize(c, n_ctx));  // so the product below cannot overflow
  const std::size_t cache_floats = static_cast<std::size_t>(c.n_layer) * n_ctx *
                                   static_cast<std::size_t>(c.n_head_kv) * c.head_dim;
  try {
    s->logits.resize(c.n_vocab);
    if (c.moe.n_expert > 0) {  // MoE / MLA: expert_forward.cc owns the caches and buffers
      s->experts =
          std::make_unique<ExpertForward>(model, *s->ws->pool, *s->ws->k, n_ctx, s->ws->max_rows);
    } else {
      s->k_cache.assign(cache_floats, 0.0f);
      s->v_cache.assign(cache_floats, 0.0f);
    }
  } catch (const std::bad_alloc&) {
    return LimitExceeded("engine: not enough memory for a session with n_ctx " +
                         std::to_string(n_ctx));
  }
  return s;
}

void Workspace::RmsNormRows(const float* in, float* out, int n, const std::vector<float>& weight) {
  const std::int64_t d = c->n_embd;
  for (int i = 0; i < n; ++i) RmsNorm(in + i * d, out + i * d, d, weight.data(), c->rms_eps);
}

void Workspace::ApplyRope(float* v, int n_rows, std::int64_t row_stride, int n_heads) {
  const int half = c->n_rot / 2;
  const int hd = c->head_dim;
  for (int i = 0; i < n_rows; ++i) {
    const float* cs = rope_cos.data() + static_cast<std::size_t>(i) * half;
    const float* sn = rope_sin.data() + static_cast<std::size_t>(i) * half;
    for (int h = 0; h < n_heads; ++h) {
      float* head = v + i * row_stride + static_cast<std::int64_t>(h) * hd;
      if (c->rope == RopeStyle::kNorm) {
        for (int j = 0; j < half; ++j) {
          const float x0 = head[2 * j], x1 = head[2 * j + 1];
          head[2 * j] = x0 * cs[j] - x1 * sn[j];
          head[2 * j + 1] = x0 * sn[j] + x1 * cs[j];
        }
      } else {
        for (int j = 0; j < half; ++j) {
          const float x0 = head[j], x1 = head[j + half];
          head[j] = x0 * cs[j] - x1 * sn[j];
          head[j + half] = x0 * sn[j] + x1 * cs[j];
        }
      }
    }
  }
}

void Workspace::Attention(int layer, int n) {
  const int hd = c->head_dim;
  const int group = c->n_head / c->n_head_kv;
  const DotRowsFn dot = k->dot[static_cast<int>(TensorType::kF32)];
  auto task = [&](int t, int thread) {
    const int i = t / c->n_head, h = t % c->n_head;
    const int g = h / group;
    const ForwardRow& row = rows[i];
    const std::size_t layer_floats = LayerCacheFloats(*row.session, kv_dim);
    const float* kc = row.session->k_cache.data() + layer * layer_floats;
    const float* vc = row.session->v_cache.data() + layer * layer_floats;
    const int last = row.pos;  // causal: the session's positions 0..last
    const float* qv = q.data() + i * q_dim + static_cast<std::int64_t>(h) * hd;
    float* sc = scores.data() + static_cast<std::size_t>(thread) * max_ctx;
    // Scores: K rows of this kv head are kv_dim apart in the cache.
    dot(hd, kc + static_cast<std::int64_t>(g) * hd, kv_dim * sizeof(float), last + 1, qv, sc);
    float max = -INFINITY;
    for (int j = 0; j <= last; ++j) {
      sc[j] *= c->kq_scale;
      max = std::max(max, sc[j]);
    }
    double sum = 0;
    for (int j = 0; j <= last; ++j) {
      sc[j] = std::exp(sc[j] - max);
      sum += sc[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    float* out = attn.data() + i * q_dim + static_cast<std::int64_t>(h) * hd;
    std::fill(out, out + hd, 0.0f);
    for (int j = 0; j <= last; ++j) {
      const float p = sc[j] * inv;
      const float* vr =
          vc + static_cast<std::int64_t>(j) * kv_dim + static_cast<std::int64_t>(g) * hd;
      for (int e = 0; e < hd; ++e) out[e] += p * vr[e];
    }
  };
  pool->Run(n * c->n_head, task);
}

void Workspace::Forward(float* logits_out) {
  const std::int64_t d = c->n_embd, ff = c->n_ff;
  const int n = static_cast<int>(rows.size());
  // Embeddings.
  const WeightMatrix& embd = w->token_embd;
  for (int i = 0; i < n; ++i) {
    DequantizeRow(embd.type, embd.data + static_cast<std::size_t>(rows[i].token) * embd.row_bytes,
                  x.data() + i * d, d);
  }
  // RoPE angles for each row's position.
  const int half = c->n_rot / 2;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < half; ++j) {
      const double theta = static_cast<double>(rows[i].pos) * inv_freq[j];
      rope_cos[static_cast<std::size_t>(i) * half + j] = static_cast<float>(std::cos(theta));
      rope_sin[static_cast<std::size_t>(i) * half + j] = static_cast<float>(std::sin(theta));
    }
  }
  for (int l = 0; l < c->n_layer; ++l) {
    const LayerWeights& lw = w->layers[l];
    RmsNormRows(x.data(), xn.data(), n, lw.attn_norm);
    act.Set(xn.data(), n, d, d);
    const MatMulJob qkv[3] = {{&lw.wq, q.data(), static_cast<std::size_t>(q_dim)},
                              {&lw.wk, kk.data(), static_cast<std::size_t>(kv_dim)},
                              {&lw.wv, vv.data(), static_cast<std::size_t>(kv_dim)}};
    MatMul(*pool, *k, act, qkv, 3);
    for (int i = 0; i < n; ++i) {
      if (!lw.q_bias.empty()) {
        for (std::int64_t e = 0; e < q_dim; ++e) q[i * q_dim + e] += lw.q_bias[e];
      }
      if (!lw.k_bias.empty()) {
        for (std::int64_t e = 0; e < kv_dim; ++e) kk[i * kv_dim + e] += lw.k_bias[e];
      }
      if (!lw.v_bias.empty()) {
        for (std::int64_t e = 0; e < kv_dim; ++e) vv[i * kv_dim + e] += lw.v_bias[e];
      }
      if (!lw.q_norm.empty()) {
        for (int h = 0; h < c->n_head; ++h) {
          float* v = q.data() + i * q_dim + static_cast<std::int64_t>(h) * c->head_dim;
          RmsNorm(v, v, c->head_dim, lw.q_norm.data(), c->rms_eps);
        }
      }
      if (!lw.k_norm.empty()) {
        for (int h = 0; h < c->n_head_kv; ++h) {
          float* v = kk.data() + i * kv_dim + static_cast<std::int64_t>(h) * c->head_dim;
          RmsNorm(v, v, c->head_dim, lw.k_norm.data(), c->rms_eps);
        }
      }
    }
    ApplyRope(q.data(), n, q_dim, c->n_head);
    ApplyRope(kk.data(), n, kv_dim, c->n_head_kv);
    // Every row's K/V goes into its own session's cache before any row attends, so rows of the
    // same session (a prompt chunk) see each other causally.
    for (int i = 0; i < n; ++i) {
      SessionState& s = *rows[i].session;
      const std::size_t at =
          static_cast<std::size_t>(l) * LayerCacheFloats(s, kv_dim) +
          static_cast<std::size_t>(rows[i].pos) * static_cast<std::size_t>(kv_dim);
      std::memcpy(s.k_cache.data() + at, kk.data() + i * kv_dim, sizeof(float) * kv_dim);
      std::memcpy(s.v_cache.data() + at, vv.data() + i * kv_dim, sizeof(float) * kv_dim);
    }
    Attention(l, n);
    act.Set(attn.data(), n, q_dim, q_dim);
    const MatMulJob wo{&lw.wo, tmp.data(), static_cast<std::size_t>(d)};
    MatMul(*pool, *k, act, &wo, 1);
    for (std::int64_t e = 0; e < n * d; ++e) x[e] += tmp[e];

    RmsNormRows(x.data(), xn.data(), n, lw.ffn_norm);
    act.Set(xn.data(), n, d, d);
    const MatMulJob gate_up[2] = {{&lw.w_gate, gate.data(), static_cast<std::size_t>(ff)},
                                  {&lw.w_up, up.data(), static_cast<std::size_t>(ff)}};
    MatMul(*pool, *k, act, gate_up, 2);
    for (std::int64_t e = 0; e < n * ff; ++e) {
      const float g = gate[e];
      gate[e] = g / (1.0f + std::exp(-g)) * up[e];
    }
    act.Set(gate.data(), n, ff, ff);
    const MatMulJob down{&lw.w_down, tmp.data(), static_cast<std::size_t>(d)};
    MatMul(*pool, *k, act, &down, 1);
    for (std::int64_t e = 0; e < n * d; ++e) x[e] += tmp[e];
  }
  const int count = static_cast<int>(out_rows.size());
  if (count == 0) return;  // non-final prompt chunks: no logits needed
  // The selected rows, normalized into consecutive rows of xn, go through the output matrix
  // together.
  for (int o = 0; o < count; ++o) {
    RmsNorm(x.data() + static_cast<std::int64_t>(out_rows[o]) * d, xn.data() + o * d, d,
            w->output_norm.data(), c->rms_eps);
  }
  act.Set(xn.data(), count, d, d);
  const MatMulJob out{&w->output, logits_out, static_cast<std::size_t>(c->n_vocab)};
  MatMul(*pool, *k, act, &out, 1);
}

}  // namespace internal

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::Create(const Model& model,
                                                 const SessionOptions& options) {
  AIRLOCK_ASSIGN_OR_RETURN(
      const internal::EngineSetup setup,
      internal::ResolveSetup(model.config(), options.n_ctx, options.n_threads, options.max_batch,
                             options.kernels, options.exact_math, "session"));
  const int n_ctx = setup.n_ctx;
  AIRLOCK_ASSIGN_OR_RETURN(
      auto ws,
      internal::Workspace::Create(model, *setup.kernels, setup.threads, setup.max_rows, n_ctx));
  AIRLOCK_ASSIGN_OR_RETURN(
      auto state, internal::SessionState::Create(model, std::shared_ptr(std::move(ws)), n_ctx));
  std::unique_ptr<Session> session(new Session());
  session->s_ = std::move(state);
  return session;
}

Result<std::span<const float>> Session::Eval(std::span<const std::int32_t> tokens,
                                             bool all_logits) {
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
    if (s.experts) {
      s.experts->Forward(tokens.data() + start, n, s.pos, out, all_logits);
    } else {
      ws.rows.clear();
      ws.out_rows.clear();
      for (int i = 0; i < n; ++i) {
        ws.rows.push_back({&s, s.pos + i, tokens[start + i]});
        if (all_logits) ws.out_rows.push_back(i);
      }
      if (out != nullptr && !all_logits) ws.out_rows.push_back(n - 1);
      ws.Forward(out);
    }
    s.pos += n;
  }
  if (all_logits) return std::span<const float>(s.all_logits);
  return std::span<const float>(s.logits);
}

int Session::position() const { return s_->pos; }
int Session::n_ctx() const { return s_->n_ctx; }
int Session::n_threads() const { return s_->ws->pool->size(); }
void Session::Rewind(int position) { s_->pos = std::clamp(position, 0, s_->pos); }
const char* Session::kernel_name() const { return s_->ws->k->name; }

}  // namespace airlock::engine
