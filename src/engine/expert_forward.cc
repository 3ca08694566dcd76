// Forward pass of the expert architectures (qwen2moe, qwen3moe, deepseek2).
//  - Routing (llama.cpp's llm_graph_context::build_moe_ffn, src/llama-graph.cpp): router logits ->
//    softmax or sigmoid probabilities; selection scores = probs + exp_probs_b; with expert groups
//    only the top n_group_used groups (ranked by the sum of their two best scores) compete; top-k
//    by selection score; weights = unbiased probs, optionally renormalized (sum clamped at
//    6.1e-5) and scaled.
//  - The (token, expert) pairs of a batch are sorted by expert, so each selected expert's rows
//    are read once per batch and only selected experts are touched (the tensors stay mapped).
//  - MLA (deepseek2), absorbed form: q_nope is mapped into the latent space by attn_k_b, scores
//    run over the cached [rmsnorm(kv_lora) | roped k_pe] rows with one KV head, the latent
//    attention output is mapped to v_head per head by attn_v_b.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "engine/internal/expert_model.h"
#include "engine/internal/weights.h"

namespace airlock::engine::internal {

namespace {

void RmsNorm(const float* in, float* out, std::int64_t n, const float* weight, float eps) {
  double sum = 0;
  for (std::int64_t i = 0; i < n; ++i) sum += static_cast<double>(in[i]) * in[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (std::int64_t i = 0; i < n; ++i) out[i] = in[i] * scale * weight[i];
}

float Silu(float g) { return g / (1.0f + std::exp(-g)); }

}  // namespace

ExpertForward::ExpertForward(const Model& model, ThreadPool& pool, const Kernels& kernels,
                             int n_ctx, int max_batch)
    : c_(model.config()),
      m_(model.config().moe),
      w_(model.weights()),
      pool_(pool),
      k_(kernels),
      n_ctx_(n_ctx),
      max_batch_(max_batch) {
  const std::int64_t d = c_.n_embd, b = max_batch;
  const int used = m_.n_expert_used;
  q_dim_ = std::int64_t{c_.n_head} * c_.head_dim;
  std::int64_t attn_dim = q_dim_;
  if (m_.mla) {
    cache_dim_ = m_.kv_lora_rank + c_.n_rot;
    attn_dim = std::int64_t{c_.n_head} * m_.v_head_dim;
    k_cache_.assign(static_cast<std::size_t>(c_.n_layer) * n_ctx * cache_dim_, 0.0f);
    kva_.resize(b * cache_dim_);
    qa_.resize(b * m_.q_lora_rank);
    qabs_.resize(b * c_.n_head * cache_dim_);
    lat_.resize(b * c_.n_head * m_.kv_lora_rank);
    qnope_.resize(b * c_.n_head * m_.qk_nope);
  } else {
    kv_dim_ = std::int64_t{c_.n_head_kv} * c_.head_dim;
    cache_dim_ = kv_dim_;
    k_cache_.assign(static_cast<std::size_t>(c_.n_layer) * n_ctx * kv_dim_, 0.0f);
    v_cache_.assign(k_cache_.size(), 0.0f);
    kk_.resize(b * kv_dim_);
    vv_.resize(b * kv_dim_);
  }
  x_.resize(b * d);
  xn_.resize(b * d);
  tmp_.resize(b * d);
  q_.resize(b * q_dim_);
  attn_.resize(b * attn_dim);
  const std::int64_t ff = std::max(c_.n_ff, m_.n_ff_shexp);
  gate_.resize(b * ff);
  up_.resize(b * ff);
  router_logits_.resize(b * m_.n_expert);
  sel_.resize(2 * m_.n_expert + m_.n_group);
  choice_.resize(b * used);
  weight_.resize(b * used);
  order_.resize(b * used);
  expert_start_.resize(m_.n_expert + 2);
  moe_in_.resize(b * used * d);
  moe_h_.resize(b * used * m_.n_ff_exp);
  moe_up_.resize(b * used * m_.n_ff_exp);
  moe_out_.resize(b * used * d);
  scores_.resize(static_cast<std::size_t>(pool.size()) * n_ctx);
  const std::int64_t max_cols = std::max<std::int64_t>(
      {d, q_dim_, attn_dim, ff, m_.n_ff_exp, m_.kv_lora_rank, m_.q_lora_rank, m_.qk_nope});
  const int max_rows = static_cast<int>(b * std::max(used, c_.n_head));
  act_.Reserve(max_rows, max_cols);
  act2_.Reserve(max_rows, m_.n_ff_exp);
  jobs_.reserve(2 * std::max(m_.n_expert, c_.n_head) + 4);
  task_start_.reserve(jobs_.capacity() + 1);
  chunk_.reserve(jobs_.capacity());

  // RoPE frequencies, with YaRN's ramp between interpolation and extrapolation.
  const int half = c_.n_rot / 2;
  inv_freq_.resize(half);
  ramp_.assign(half, 0.0f);
  for (int j = 0; j < half; ++j)
    inv_freq_[j] = std::pow(static_cast<double>(c_.rope_base), -2.0 * j / c_.n_rot);
  const float fs = c_.rope_freq_scale;
  if (m_.yarn && m_.yarn_ext_factor != 0) {
    auto corr_dim = [&](float n_rot) {
      return c_.n_rot * std::log(m_.yarn_orig_ctx / (n_rot * 2 * std::numbers::pi_v<float>)) /
             (2 * std::log(c_.rope_base));
    };
    const float low = std::max(0.0f, std::floor(corr_dim(m_.yarn_beta_fast)));
    const float high =
        std::min(static_cast<float>(c_.n_rot - 1), std::ceil(corr_dim(m_.yarn_beta_slow)));
    for (int j = 0; j < half; ++j) {
      const float y = (j - low) / std::max(0.001f, high - low);
      ramp_[j] = (1.0f - std::min(1.0f, std::max(0.0f, y))) * m_.yarn_ext_factor;
    }
    // ggml scales cos/sin by attn_factor * (1 + 0.1 ln(1/fs)); for deepseek2 llama.cpp passes
    // an attn_factor that cancels the second term (the magnitude goes into kq_scale instead).
    rope_mscale_ =
        m_.mla ? m_.yarn_attn_factor : m_.yarn_attn_factor * (1.0f + 0.1f * std::log(1.0f / fs));
  }
  rope_cos_.resize(b * half);
  rope_sin_.resize(b * half);
  kq_scale_ = c_.kq_scale;
}

void ExpertForward::RopeAngles(int n, int p0) {
  const int half = c_.n_rot / 2;
  const double fs = c_.rope_freq_scale;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < half; ++j) {
      const double extrap = static_cast<double>(p0 + i) * inv_freq_[j];
      const double interp = fs * extrap;
      const double theta = interp * (1 - ramp_[j]) + extrap * ramp_[j];
      rope_cos_[static_cast<std::size_t>(i) * half + j] =
          static_cast<float>(std::cos(theta)) * rope_mscale_;
      rope_sin_[static_cast<std::size_t>(i) * half + j] =
          static_cast<float>(std::sin(theta)) * rope_mscale_;
    }
  }
}

void ExpertForward::Rope(float* v, int n_rows, std::int64_t row_stride, int n_heads,
                         std::int64_t head_stride, int offset, RopeStyle style) {
  const int half = c_.n_rot / 2;
  for (int i = 0; i < n_rows; ++i) {
    const float* cs = rope_cos_.data() + static_cast<std::size_t>(i) * half;
    const float* sn = rope_sin_.data() + static_cast<std::size_t>(i) * half;
    for (int h = 0; h < n_heads; ++h) {
      float* head = v + i * row_stride + h * head_stride + offset;
      for (int j = 0; j < half; ++j) {
        const int a = style == RopeStyle::kNorm ? 2 * j : j;
        const int b = style == RopeStyle::kNorm ? 2 * j + 1 : j + half;
        const float x0 = head[a], x1 = head[b];
        head[a] = x0 * cs[j] - x1 * sn[j];
        head[b] = x0 * sn[j] + x1 * cs[j];
      }
    }
  }
}

void ExpertForward::GroupedMatMul(ActivationBuffer& act, int n_jobs) {
  if (n_jobs == 0) return;
  int max_rows = 0;
  for (int j = 0; j < n_jobs; ++j) {
    act.Row(ActFormatFor(k_, jobs_[j].w.type), 0, pool_, k_);  // convert before the tasks
    max_rows = std::max(max_rows, jobs_[j].a1 - jobs_[j].a0);
  }
  // As in MatMul: with few activation rows per expert the weights are streamed once, so each
  // task is a long run of contiguous rows (about four tasks per thread over all the experts'
  // matrices; a small expert matrix is one task); with many rows, short chunks stay in cache.
  std::int64_t total_rows = 0;
  for (int j = 0; j < n_jobs; ++j) total_rows += jobs_[j].w.rows;
  const std::int64_t per_task = (total_rows + 4 * pool_.size() - 1) / (4 * pool_.size());
  const std::int64_t long_run = std::max<std::int64_t>(32, (per_task + 7) / 8 * 8);
  task_start_.resize(n_jobs + 1);
  chunk_.resize(n_jobs);
  task_start_[0] = 0;
  for (int j = 0; j < n_jobs; ++j) {
    chunk_[j] = max_rows > 8 ? 16 : long_run;
    task_start_[j + 1] =
        task_start_[j] + static_cast<int>((jobs_[j].w.rows + chunk_[j] - 1) / chunk_[j]);
  }
  auto run = [&](int task, int) {
    const int j = static_cast<int>(
        std::upper_bound(task_start_.begin(), task_start_.begin() + n_jobs + 1, task) -
        task_start_.begin() - 1);
    const GroupJob& job = jobs_[j];
    const WeightMatrix& w = job.w;
    const ActFormat format = ActFormatFor(k_, w.type);
    const std::int64_t chunk = chunk_[j];
    const std::int64_t r0 = static_cast<std::int64_t>(task - task_start_[j]) * chunk;
    const int nr = static_cast<int>(std::min<std::int64_t>(chunk, w.rows - r0));
    const std::uint8_t* wrows = w.data + r0 * w.row_bytes;
    const int ntok = job.a1 - job.a0;
    const DotTileFn tile = k_.tile[static_cast<int>(w.type)];
    if (tile != nullptr && ntok > 1) {
      const auto* a0 = static_cast<const std::uint8_t*>(act.Row(format, job.a0, pool_, k_));
      const auto* a1 = static_cast<const std::uint8_t*>(act.Row(format, job.a0 + 1, pool_, k_));
      tile(w.cols, wrows, w.row_bytes, nr, a0, static_cast<std::size_t>(a1 - a0), ntok,
           job.out + r0, job.ldo);
      return;
    }
    const DotRowsFn dot = k_.dot[static_cast<int>(w.type)];
    for (int t = 0; t < ntok; ++t) {
      dot(w.cols, wrows, w.row_bytes, nr, act.Row(format, job.a0 + t, pool_, k_),
          job.out + t * job.ldo + r0);
    }
  };
  pool_.Run(task_start_[n_jobs], run);
}

void ExpertForward::Attention(int layer, int n, int p0) {
  const LayerWeights& lw = w_.layers[layer];
  const std::int64_t d = c_.n_embd;
  const int hd = c_.head_dim;
  act_.Set(xn_.data(), n, d, d);
  const MatMulJob qkv[3] = {{&lw.wq, q_.data(), static_cast<std::size_t>(q_dim_)},
                            {&lw.wk, kk_.data(), static_cast<std::size_t>(kv_dim_)},
                            {&lw.wv, vv_.data(), static_cast<std::size_t>(kv_dim_)}};
  MatMul(pool_, k_, act_, qkv, 3);
  for (int i = 0; i < n; ++i) {
    float* qi = q_.data() + i * q_dim_;
    float* ki = kk_.data() + i * kv_dim_;
    float* vi = vv_.data() + i * kv_dim_;
    for (std::size_t e = 0; e < lw.q_bias.size(); ++e) qi[e] += lw.q_bias[e];
    for (std::size_t e = 0; e < lw.k_bias.size(); ++e) ki[e] += lw.k_bias[e];
    for (std::size_t e = 0; e < lw.v_bias.size(); ++e) vi[e] += lw.v_bias[e];
    if (!lw.q_norm.empty()) {
      for (int h = 0; h < c_.n_head; ++h)
        RmsNorm(qi + h * hd, qi + h * hd, hd, lw.q_norm.data(), c_.rms_eps);
    }
    if (!lw.k_norm.empty()) {
      for (int h = 0; h < c_.n_head_kv; ++h)
        RmsNorm(ki + h * hd, ki + h * hd, hd, lw.k_norm.data(), c_.rms_eps);
    }
  }
  Rope(q_.data(), n, q_dim_, c_.n_head, hd, 0, c_.rope);
  Rope(kk_.data(), n, kv_dim_, c_.n_head_kv, hd, 0, c_.rope);
  float* kc = k_cache_.data() + static_cast<std::size_t>(layer) * n_ctx_ * kv_dim_;
  float* vc = v_cache_.data() + static_cast<std::size_t>(layer) * n_ctx_ * kv_dim_;
  std::memcpy(kc + p0 * kv_dim_, kk_.data(), sizeof(float) * n * kv_dim_);
  std::memcpy(vc + p0 * kv_dim_, vv_.data(), sizeof(float) * n * kv_dim_);
  const int group = c_.n_head / c_.n_head_kv;
  const DotRowsFn dot = k_.dot[static_cast<int>(TensorType::kF32)];
  auto task = [&](int t, int thread) {
    const int i = t / c_.n_head, h = t % c_.n_head, g = h / group;
    const int last = p0 + i;
    float* sc = scores_.data() + static_cast<std::size_t>(thread) * n_ctx_;
    dot(hd, kc + static_cast<std::int64_t>(g) * hd, kv_dim_ * sizeof(float), last + 1,
        q_.data() + i * q_dim_ + h * hd, sc);
    float max = -INFINITY;
    for (int j = 0; j <= last; ++j) max = std::max(max, sc[j] *= kq_scale_);
    double sum = 0;
    for (int j = 0; j <= last; ++j) sum += sc[j] = std::exp(sc[j] - max);
    const float inv = static_cast<float>(1.0 / sum);
    float* out = attn_.data() + i * q_dim_ + h * hd;
    std::fill(out, out + hd, 0.0f);
    for (int j = 0; j <= last; ++j) {
      const float pj = sc[j] * inv;
      const float* vr = vc + j * kv_dim_ + static_cast<std::int64_t>(g) * hd;
      for (int e = 0; e < hd; ++e) out[e] += pj * vr[e];
    }
  };
  pool_.Run(n * c_.n_head, task);
  act_.Set(attn_.data(), n, q_dim_, q_dim_);
  const MatMulJob wo{&lw.wo, tmp_.data(), static_cast<std::size_t>(d)};
  MatMul(pool_, k_, act_, &wo, 1);
}

void ExpertForward::LatentAttention(int layer, int n, int p0) {
  const LayerWeights& lw = w_.layers[layer];
  const ExpertLayerWeights& x = lw.x;
  const std::int64_t d = c_.n_embd;
  const int H = c_.n_head, nope = m_.qk_nope, kvl = m_.kv_lora_rank, hq = c_.head_dim,
            vh = m_.v_head_dim;
  const std::int64_t kd = cache_dim_;
  act_.Set(xn_.data(), n, d, d);
  if (m_.q_lora_rank > 0) {
    const MatMulJob a[2] = {{&x.wq_a, qa_.data(), static_cast<std::size_t>(m_.q_lora_rank)},
                            {&x.wkv_a, kva_.data(), static_cast<std::size_t>(kd)}};
    MatMul(pool_, k_, act_, a, 2);
    for (int i = 0; i < n; ++i) {
      float* r = qa_.data() + static_cast<std::int64_t>(i) * m_.q_lora_rank;
      RmsNorm(r, r, m_.q_lora_rank, x.q_a_norm.data(), c_.rms_eps);
    }
    act_.Set(qa_.data(), n, m_.q_lora_rank, m_.q_lora_rank);
    const MatMulJob qb{&x.wq_b, q_.data(), static_cast<std::size_t>(q_dim_)};
    MatMul(pool_, k_, act_, &qb, 1);
  } else {
    const MatMulJob a[2] = {{&lw.wq, q_.data(), static_cast<std::size_t>(q_dim_)},
                            {&x.wkv_a, kva_.data(), static_cast<std::size_t>(kd)}};
    MatMul(pool_, k_, act_, a, 2);
  }
  Rope(q_.data(), n, q_dim_, H, hq, nope, RopeStyle::kNorm);
  Rope(kva_.data(), n, kd, 1, kd, kvl, RopeStyle::kNorm);
  float* cache = k_cache_.data() + static_cast<std::size_t>(layer) * n_ctx_ * kd;
  for (int i = 0; i < n; ++i) {
    float* r = kva_.data() + i * kd;
    RmsNorm(r, r, kvl, x.kv_a_norm.data(), c_.rms_eps);
  }
  std::memcpy(cache + p0 * kd, kva_.data(), sizeof(float) * n * kd);
  // Absorb: q_abs[i][h] = [k_b[h] . q_nope[i][h] | q_pe[i][h]].
  for (int h = 0; h < H; ++h) {
    for (int i = 0; i < n; ++i) {
      std::memcpy(qnope_.data() + (static_cast<std::int64_t>(h) * n + i) * nope,
                  q_.data() + i * q_dim_ + h * hq, sizeof(float) * nope);
      std::memcpy(qabs_.data() + (static_cast<std::int64_t>(i) * H + h) * kd + kvl,
                  q_.data() + i * q_dim_ + h * hq + nope, sizeof(float) * c_.n_rot);
    }
  }
  act_.Set(qnope_.data(), H * n, nope, nope);
  jobs_.resize(H);
  for (int h = 0; h < H; ++h) {
    jobs_[h] = {x.k_b.Slice(h), h * n, (h + 1) * n, qabs_.data() + h * kd,
                static_cast<std::size_t>(H * kd)};
  }
  GroupedMatMul(act_, H);
  const DotRowsFn dot = k_.dot[static_cast<int>(TensorType::kF32)];
  auto task = [&](int t, int thread) {
    const int i = t / H, h = t % H;
    const int last = p0 + i;
    float* sc = scores_.data() + static_cast<std::size_t>(thread) * n_ctx_;
    dot(kd, cache, kd * sizeof(float), last + 1,
        qabs_.data() + (static_cast<std::int64_t>(i) * H + h) * kd, sc);
    float max = -INFINITY;
    for (int j = 0; j <= last; ++j) max = std::max(max, sc[j] *= kq_scale_);
    double sum = 0;
    for (int j = 0; j <= last; ++j) sum += sc[j] = std::exp(sc[j] - max);
    const float inv = static_cast<float>(1.0 / sum);
    float* out = lat_.data() + (static_cast<std::int64_t>(h) * n + i) * kvl;
    std::fill(out, out + kvl, 0.0f);
    for (int j = 0; j <= last; ++j) {
      const float pj = sc[j] * inv;
      const float* vr = cache + j * kd;
      for (int e = 0; e < kvl; ++e) out[e] += pj * vr[e];
    }
  };
  pool_.Run(n * H, task);
  act_.Set(lat_.data(), H * n, kvl, kvl);
  for (int h = 0; h < H; ++h) {
    jobs_[h] = {x.v_b.Slice(h), h * n, (h + 1) * n, attn_.data() + h * vh,
                static_cast<std::size_t>(H) * vh};
  }
  GroupedMatMul(act_, H);
  const std::int64_t attn_dim = std::int64_t{H} * vh;
  act_.Set(attn_.data(), n, attn_dim, attn_dim);
  const MatMulJob wo{&lw.wo, tmp_.data(), static_cast<std::size_t>(d)};
  MatMul(pool_, k_, act_, &wo, 1);
}

void ExpertForward::DenseFfn(const WeightMatrix& gate, const WeightMatrix& up,
                             const WeightMatrix& down, int n, float* out) {
  const std::int64_t d = c_.n_embd, ff = gate.rows;
  act_.Set(xn_.data(), n, d, d);
  const MatMulJob gu[2] = {{&gate, gate_.data(), static_cast<std::size_t>(ff)},
                           {&up, up_.data(), static_cast<std::size_t>(ff)}};
  MatMul(pool_, k_, act_, gu, 2);
  for (std::int64_t e = 0; e < n * ff; ++e) gate_[e] = Silu(gate_[e]) * up_[e];
  act_.Set(gate_.data(), n, ff, ff);
  const MatMulJob dn{&down, out, static_cast<std::size_t>(d)};
  MatMul(pool_, k_, act_, &dn, 1);
}

void ExpertForward::Route(int layer, int n) {
  const ExpertLayerWeights& x = w_.layers[layer].x;
  const int E = m_.n_expert, K = m_.n_expert_used;
  act_.Set(xn_.data(), n, c_.n_embd, c_.n_embd);
  const MatMulJob r{&x.router, router_logits_.data(), static_cast<std::size_t>(E)};
  MatMul(pool_, k_, act_, &r, 1);
  float* probs = sel_.data();
  float* select = sel_.data() + E;
  float* group_score = sel_.data() + 2 * E;
  const int per_group = E / m_.n_group;
  for (int t = 0; t < n; ++t) {
    const float* logit = router_logits_.data() + static_cast<std::int64_t>(t) * E;
    if (m_.gating == ExpertGating::kSigmoid) {
      for (int e = 0; e < E; ++e) probs[e] = 1.0f / (1.0f + std::exp(-logit[e]));
    } else {
      float max = -INFINITY;
      for (int e = 0; e < E; ++e) max = std::max(max, logit[e]);
      double sum = 0;
      for (int e = 0; e < E; ++e) sum += probs[e] = std::exp(logit[e] - max);
      for (int e = 0; e < E; ++e) probs[e] = static_cast<float>(probs[e] / sum);
    }
    for (int e = 0; e < E; ++e)
      select[e] = probs[e] + (x.probs_bias.empty() ? 0.0f : x.probs_bias[e]);
    if (m_.n_group > 1 && m_.n_group_used < m_.n_group) {
      for (int g = 0; g < m_.n_group; ++g) {
        float best = -INFINITY, second = -INFINITY;
        for (int e = g * per_group; e < (g + 1) * per_group; ++e) {
          if (select[e] > best) {
            second = best;
            best = select[e];
          } else if (select[e] > second) {
            second = select[e];
          }
        }
        group_score[g] = per_group > 1 ? best + second : best;
      }
      for (int g = 0; g < m_.n_group; ++g) {
        int rank = 0;  // groups ranked above g (ties: lower index first)
        for (int o = 0; o < m_.n_group; ++o) {
          if (group_score[o] > group_score[g] || (group_score[o] == group_score[g] && o < g))
            ++rank;
        }
        if (rank >= m_.n_group_used) {
          for (int e = g * per_group; e < (g + 1) * per_group; ++e) select[e] = -INFINITY;
        }
      }
    }
    int* chosen = choice_.data() + static_cast<std::int64_t>(t) * K;
    float* wt = weight_.data() + static_cast<std::int64_t>(t) * K;
    for (int s = 0; s < K; ++s) {  // top-k by selection score; ties: lower expert id
      int best = -1;
      for (int e = 0; e < E; ++e) {
        bool taken = false;
        for (int q = 0; q < s; ++q) taken |= chosen[q] == e;
        if (!taken && (best < 0 || select[e] > select[best])) best = e;
      }
      chosen[s] = best;
      wt[s] = probs[best];
    }
    if (m_.norm_weights) {
      float sum = 0;
      for (int s = 0; s < K; ++s) sum += wt[s];
      sum = std::max(sum, 6.103515625e-5f);
      for (int s = 0; s < K; ++s) wt[s] /= sum;
    }
    if (m_.weights_scale != 1.0f) {
      for (int s = 0; s < K; ++s) wt[s] *= m_.weights_scale;
    }
  }
}

void ExpertForward::MoeFfn(int layer, int n) {
  const ExpertLayerWeights& x = w_.layers[layer].x;
  const int E = m_.n_expert, K = m_.n_expert_used, ffe = m_.n_ff_exp;
  const std::int64_t d = c_.n_embd;
  Route(layer, n);
  // Pairs (token, slot) sorted by expert: counting sort.
  std::fill(expert_start_.begin(), expert_start_.end(), 0);
  for (int p = 0; p < n * K; ++p) ++expert_start_[choice_[p] + 2];
  for (int e = 0; e < E; ++e) expert_start_[e + 2] += expert_start_[e + 1];
  for (int p = 0; p < n * K; ++p) order_[expert_start_[choice_[p] + 1]++] = p;
  // Now expert_start_[e] .. expert_start_[e + 1] are expert e's pairs.
  for (int r = 0; r < n * K; ++r) {
    std::memcpy(moe_in_.data() + r * d, xn_.data() + (order_[r] / K) * d, sizeof(float) * d);
  }
  act_.Set(moe_in_.data(), n * K, d, d);
  int n_jobs = 0;
  jobs_.resize(2 * E);
  for (int e = 0; e < E; ++e) {
    const int a0 = expert_start_[e], a1 = expert_start_[e + 1];
    if (a0 == a1) continue;
    jobs_[n_jobs++] = {x.gate_exps.Slice(e), a0, a1, moe_h_.data() + a0 * ffe,
                       static_cast<std::size_t>(ffe)};
    jobs_[n_jobs++] = {x.up_exps.Slice(e), a0, a1, moe_up_.data() + a0 * ffe,
                       static_cast<std::size_t>(ffe)};
  }
  GroupedMatMul(act_, n_jobs);
  for (std::int64_t i = 0; i < std::int64_t{n} * K * ffe; ++i)
    moe_h_[i] = Silu(moe_h_[i]) * moe_up_[i];
  act2_.Set(moe_h_.data(), n * K, ffe, ffe);
  n_jobs = 0;
  for (int e = 0; e < E; ++e) {
    const int a0 = expert_start_[e], a1 = expert_start_[e + 1];
    if (a0 == a1) continue;
    jobs_[n_jobs++] = {x.down_exps.Slice(e), a0, a1, moe_out_.data() + a0 * d,
                       static_cast<std::size_t>(d)};
  }
  GroupedMatMul(act2_, n_jobs);
  for (int r = 0; r < n * K; ++r) {
    const int p = order_[r];
    const float wgt = weight_[p];
    float* xt = x_.data() + (p / K) * d;
    const float* o = moe_out_.data() + r * d;
    for (std::int64_t e = 0; e < d; ++e) xt[e] += wgt * o[e];
  }
  if (x.gate_shexp.valid()) {
    DenseFfn(x.gate_shexp, x.up_shexp, x.down_shexp, n, tmp_.data());
    for (int t = 0; t < n; ++t) {
      float g = 1.0f;
      if (!x.shexp_gate.empty()) {
        double dot = 0;
        const float* xt = xn_.data() + t * d;
        for (std::int64_t e = 0; e < d; ++e) dot += static_cast<double>(x.shexp_gate[e]) * xt[e];
        g = 1.0f / (1.0f + std::exp(-static_cast<float>(dot)));
      }
      float* xt = x_.data() + t * d;
      const float* o = tmp_.data() + t * d;
      for (std::int64_t e = 0; e < d; ++e) xt[e] += g * o[e];
    }
  }
}

void ExpertForward::Forward(const std::int32_t* tokens, int n, int p0, float* logits_out,
                            bool all_rows) {
  const std::int64_t d = c_.n_embd;
  const WeightMatrix& embd = w_.token_embd;
  for (int i = 0; i < n; ++i) {
    DequantizeRow(embd.type, embd.data + static_cast<std::size_t>(tokens[i]) * embd.row_bytes,
                  x_.data() + i * d, d);
  }
  RopeAngles(n, p0);
  for (int l = 0; l < c_.n_layer; ++l) {
    const LayerWeights& lw = w_.layers[l];
    for (int i = 0; i < n; ++i)
      RmsNorm(x_.data() + i * d, xn_.data() + i * d, d, lw.attn_norm.data(), c_.rms_eps);
    if (m_.mla) {
      LatentAttention(l, n, p0);
    } else {
      Attention(l, n, p0);
    }
    for (std::int64_t e = 0; e < n * d; ++e) x_[e] += tmp_[e];
    for (int i = 0; i < n; ++i)
      RmsNorm(x_.data() + i * d, xn_.data() + i * d, d, lw.ffn_norm.data(), c_.rms_eps);
    if (lw.x.is_moe) {
      MoeFfn(l, n);
    } else {
      DenseFfn(lw.w_gate, lw.w_up, lw.w_down, n, tmp_.data());
      for (std::int64_t e = 0; e < n * d; ++e) x_[e] += tmp_[e];
    }
  }
  if (logits_out == nullptr) return;  // a non-final prompt chunk: no logits needed
  const int first = all_rows ? 0 : n - 1;
  const int count = n - first;
  for (int i = 0; i < count; ++i) {
    RmsNorm(x_.data() + (first + i) * d, xn_.data() + i * d, d, w_.output_norm.data(), c_.rms_eps);
  }
  act_.Set(xn_.data(), count, d, d);
  const MatMulJob out{&w_.output, logits_out, static_cast<std::size_t>(c_.n_vocab)};
  MatMul(pool_, k_, act_, &out, 1);
}

}  // namespace airlock::engine::internal
