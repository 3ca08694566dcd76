// The forward pass shared by the llama, qwen2 and qwen3 architectures: pre-RMSNorm blocks with
// GQA self-attention (RoPE NORM or NEOX, optional q/k/v biases, optional per-head q/k RMS norm)
// and a SwiGLU feed-forward, then the final norm and the output projection.
#include "engine/session.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <system_error>
#include <thread>

#include "core/bytes.h"
#include "engine/internal/expert_model.h"
#include "engine/internal/kernels.h"
#include "engine/internal/matmul.h"
#include "engine/internal/thread_pool.h"
#include "engine/internal/weights.h"

namespace airlock::engine {

namespace internal {

struct SessionState {
  const Model* model = nullptr;
  const ModelConfig* c = nullptr;
  const ModelWeights* w = nullptr;
  const Kernels* k = nullptr;
  std::unique_ptr<ThreadPool> pool;
  int n_ctx = 0;
  int max_batch = 0;
  int pos = 0;
  std::int64_t q_dim = 0, kv_dim = 0;
  std::vector<float> k_cache, v_cache;  // [layer][n_ctx][kv_dim]
  std::vector<float> x, xn, q, kk, vv, attn, tmp, gate, up;
  std::vector<float> logits;              // n_vocab (last token)
  std::vector<float> all_logits;          // n * n_vocab when requested
  std::vector<float> scores;              // [thread][n_ctx]
  std::vector<double> inv_freq;           // n_rot / 2
  std::vector<float> rope_cos, rope_sin;  // [max_batch][n_rot / 2]
  ActivationBuffer act;
  std::unique_ptr<ExpertForward> experts;  // MoE / MLA architectures (expert_forward.cc)

  void Forward(const std::int32_t* tokens, int n, float* logits_out, bool all_rows);
  void RmsNormRows(const float* in, float* out, int n, const std::vector<float>& weight);
  void ApplyRope(float* v, int n_rows, std::int64_t row_stride, int n_heads);
  void Attention(int layer, int n, int p0);
};

namespace {

void RmsNorm(const float* in, float* out, std::int64_t n, const float* weight, float eps) {
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(in[i]) * in[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] * scale * weight[i];
}

}  // namespace

void SessionState::RmsNormRows(const float* in, float* out, int n,
                               const std::vector<float>& weight) {
  const std::int64_t d = c->n_embd;
  for (int i = 0; i < n; ++i) RmsNorm(in + i * d, out + i * d, d, weight.data(), c->rms_eps);
}

void SessionState::ApplyRope(float* v, int n_rows, std::int64_t row_stride, int n_heads) {
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

void SessionState::Attention(int layer, int n, int p0) {
  const int hd = c->head_dim;
  const int group = c->n_head / c->n_head_kv;
  const float* kc = k_cache.data() + static_cast<std::size_t>(layer) * n_ctx * kv_dim;
  const float* vc = v_cache.data() + static_cast<std::size_t>(layer) * n_ctx * kv_dim;
  const DotRowsFn dot = k->dot[static_cast<int>(TensorType::kF32)];
  auto task = [&](int t, int thread) {
    const int i = t / c->n_head, h = t % c->n_head;
    const int g = h / group;
    const int last = p0 + i;  // causal: positions 0..last
    const float* qv = q.data() + i * q_dim + static_cast<std::int64_t>(h) * hd;
    float* sc = scores.data() + static_cast<std::size_t>(thread) * n_ctx;
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

void SessionState::Forward(const std::int32_t* tokens, int n, float* logits_out, bool all_rows) {
  if (experts) {
    experts->Forward(tokens, n, pos, logits_out, all_rows);
    pos += n;
    return;
  }
  const std::int64_t d = c->n_embd, ff = c->n_ff;
  const int p0 = pos;
  // Embeddings.
  const WeightMatrix& embd = w->token_embd;
  for (int i = 0; i < n; ++i) {
    DequantizeRow(embd.type, embd.data + static_cast<std::size_t>(tokens[i]) * embd.row_bytes,
                  x.data() + i * d, d);
  }
  // RoPE angles for these positions.
  const int half = c->n_rot / 2;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < half; ++j) {
      const double theta = static_cast<double>(p0 + i) * inv_freq[j];
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
    float* kc = k_cache.data() + (static_cast<std::size_t>(l) * n_ctx + p0) * kv_dim;
    float* vc = v_cache.data() + (static_cast<std::size_t>(l) * n_ctx + p0) * kv_dim;
    std::memcpy(kc, kk.data(), sizeof(float) * n * kv_dim);
    std::memcpy(vc, vv.data(), sizeof(float) * n * kv_dim);
    Attention(l, n, p0);
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
  if (logits_out == nullptr) {  // a non-final prompt chunk: no logits needed
    pos += n;
    return;
  }
  const int first = all_rows ? 0 : n - 1;
  const int count = n - first;
  RmsNormRows(x.data() + first * d, xn.data(), count, w->output_norm);
  act.Set(xn.data(), count, d, d);
  const MatMulJob out{&w->output, logits_out, static_cast<std::size_t>(c->n_vocab)};
  MatMul(*pool, *k, act, &out, 1);
  pos += n;
}

}  // namespace internal

Session::~Session() = default;

Result<std::unique_ptr<Session>> Session::Create(const Model& model,
                                                 const SessionOptions& options) {
  const ModelConfig& c = model.config();
  auto s = std::make_unique<internal::SessionState>();
  s->model = &model;
  s->c = &c;
  s->w = &model.weights();
  s->k = options.exact_math ? &ExactKernels() : &BestKernels();
  if (options.n_ctx < 0 || options.n_threads < 0 || options.max_batch < 0) {
    return InvalidArgument("engine: bad session options: negative value");
  }
  s->n_ctx = options.n_ctx > 0 ? options.n_ctx : std::min(c.n_ctx_train, 4096);
  if (s->n_ctx > (1 << 20)) return InvalidArgument("engine: bad session options: n_ctx above 1M");
  s->max_batch = std::clamp(options.max_batch > 0 ? options.max_batch : 256, 1, 4096);
  int threads = options.n_threads;
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  threads = std::min(threads, 256);
  const std::int64_t d = c.n_embd, b = s->max_batch;
  s->q_dim = std::int64_t{c.n_head} * c.head_dim;
  s->kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
  // The KV cache dominates: refuse sizes no machine has before trying to allocate them.
  std::uint64_t cache_floats = 0;
  if (!core::CheckedMul(static_cast<std::uint64_t>(c.n_layer) * s->n_ctx, s->kv_dim,
                        &cache_floats) ||
      cache_floats > (std::uint64_t{1} << 36) / 8) {
    return LimitExceeded("engine: the KV cache for n_ctx " + std::to_string(s->n_ctx) +
                         " would exceed 64 GiB; use a smaller context");
  }
  if (c.moe.n_expert > 0) {  // MoE / MLA: expert_forward.cc owns the caches and buffers
    try {
      s->pool = std::make_unique<ThreadPool>(threads);
      s->experts = std::make_unique<internal::ExpertForward>(model, *s->pool, *s->k, s->n_ctx,
                                                             s->max_batch);
      s->logits.resize(c.n_vocab);
    } catch (const std::bad_alloc&) {
      return LimitExceeded("engine: not enough memory for a session with n_ctx " +
                           std::to_string(s->n_ctx));
    } catch (const std::system_error& e) {
      return Internal(std::string("engine: cannot start worker threads: ") + e.what());
    }
    std::unique_ptr<Session> session(new Session());
    session->s_ = std::move(s);
    return session;
  }
  const std::size_t cache = static_cast<std::size_t>(cache_floats);
  try {
    s->pool = std::make_unique<ThreadPool>(threads);
    s->k_cache.assign(cache, 0.0f);
    s->v_cache.assign(cache, 0.0f);
    s->x.resize(b * d);
    s->xn.resize(b * d);
    s->tmp.resize(b * d);
    s->q.resize(b * s->q_dim);
    s->attn.resize(b * s->q_dim);
    s->kk.resize(b * s->kv_dim);
    s->vv.resize(b * s->kv_dim);
    s->gate.resize(b * c.n_ff);
    s->up.resize(b * c.n_ff);
    s->logits.resize(c.n_vocab);
    s->scores.resize(static_cast<std::size_t>(threads) * s->n_ctx);
    s->act.Reserve(s->max_batch, std::max<std::int64_t>({d, s->q_dim, c.n_ff}));
    const int half = c.n_rot / 2;
    s->inv_freq.resize(half);
    const auto& factors = model.weights().rope_freqs;
    for (int j = 0; j < half; ++j) {
      double f = std::pow(static_cast<double>(c.rope_base), -2.0 * j / c.n_rot) * c.rope_freq_scale;
      if (!factors.empty()) f /= factors[j];
      s->inv_freq[j] = f;
    }
    s->rope_cos.resize(static_cast<std::size_t>(s->max_batch) * half);
    s->rope_sin.resize(static_cast<std::size_t>(s->max_batch) * half);
  } catch (const std::bad_alloc&) {
    return LimitExceeded("engine: not enough memory for a session with n_ctx " +
                         std::to_string(s->n_ctx));
  } catch (const std::system_error& e) {
    return Internal(std::string("engine: cannot start worker threads: ") + e.what());
  }
  std::unique_ptr<Session> session(new Session());
  session->s_ = std::move(s);
  return session;
}

Result<std::span<const float>> Session::Eval(std::span<const std::int32_t> tokens,
                                             bool all_logits) {
  internal::SessionState& s = *s_;
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
  for (std::size_t start = 0; start < tokens.size(); start += s.max_batch) {
    const int n = static_cast<int>(std::min<std::size_t>(s.max_batch, tokens.size() - start));
    const bool last_chunk = start + n == tokens.size();
    float* out = all_logits ? s.all_logits.data() + start * vocab : s.logits.data();
    if (!all_logits && !last_chunk) out = nullptr;  // only the last token's logits are returned
    s.Forward(tokens.data() + start, n, out, all_logits);
  }
  if (all_logits) return std::span<const float>(s.all_logits);
  return std::span<const float>(s.logits);
}

int Session::position() const { return s_->pos; }
int Session::n_ctx() const { return s_->n_ctx; }
int Session::n_threads() const { return s_->pool->size(); }
void Session::Rewind(int position) { s_->pos = std::clamp(position, 0, s_->pos); }
const char* Session::kernel_name() const { return s_->k->name; }

}  // namespace airlock::engine
