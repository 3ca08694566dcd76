// The forward pass every architecture shares (embeddings, the architecture's layer loop from the
// registry, the output head), the workspace's buffers, and the KV cache's layout and storage.
#include "engine/internal/workspace.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <system_error>
#include <thread>

#include "core/bytes.h"
#include "engine/blocks/attention.h"
#include "engine/blocks/norm.h"

namespace airlock::engine::internal {

KvShape KvShapeOf(const ModelConfig& c) {
  if (c.moe.mla) return {std::int64_t{c.moe.kv_lora_rank} + c.n_rot, 0};
  const std::int64_t kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
  return {kv_dim, kv_dim};
}

std::size_t KvRowBytes(TensorType type, std::int64_t n) {
  switch (type) {
    case TensorType::kF32:
      return static_cast<std::size_t>(n) * 4;
    case TensorType::kQ8_0:
      return static_cast<std::size_t>(n / kQK) * sizeof(BlockQ8_0);
    default:
      return static_cast<std::size_t>(n) * 2;
  }
}

void StoreKvRow(TensorType type, const float* src, std::uint8_t* dst, std::int64_t n) {
  switch (type) {
    case TensorType::kF32:
      std::memcpy(dst, src, sizeof(float) * n);
      return;
    case TensorType::kQ8_0:
      QuantizeRowQ8_0(src, dst, n);
      return;
    default: {
      auto* h = reinterpret_cast<std::uint16_t*>(dst);
      for (std::int64_t e = 0; e < n; ++e) h[e] = Fp32ToFp16(src[e]);
      return;
    }
  }
}

TensorType KvTensorType(KvCacheType type, bool exact_math) {
  switch (type) {
    case KvCacheType::kF32:
      return TensorType::kF32;
    case KvCacheType::kF16:
      return TensorType::kF16;
    case KvCacheType::kQ8_0:
      return TensorType::kQ8_0;
    case KvCacheType::kAuto:
      break;
  }
  return exact_math ? TensorType::kF32 : TensorType::kF16;
}

Status CheckKvCacheSize(const ModelConfig& c, int n_ctx, TensorType kv_type) {
  const KvShape shape = KvShapeOf(c);
  const std::uint64_t row = KvRowBytes(kv_type, shape.k_width) + KvRowBytes(kv_type, shape.v_width);
  std::uint64_t bytes = 0;
  if (!core::CheckedMul(static_cast<std::uint64_t>(c.n_layer) * n_ctx, row, &bytes) ||
      bytes > (std::uint64_t{1} << 36)) {
    return LimitExceeded("engine: the KV cache for n_ctx " + std::to_string(n_ctx) +
                         " would exceed 64 GiB; use a smaller context");
  }
  return {};
}

Result<EngineSetup> ResolveSetup(const ModelConfig& c, int n_ctx, int n_threads, int max_rows,
                                 const Kernels* kernels, bool exact_math, KvCacheType kv_type,
                                 const char* what) {
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
  setup.kv_type = KvTensorType(kv_type, exact_math);
  if (setup.kv_type == TensorType::kQ8_0) {
    // Attention reads each head's slice of a cache row as whole 32-value blocks.
    const bool fits =
        c.moe.mla ? c.moe.kv_lora_rank % kQK == 0 && c.n_rot % kQK == 0 : c.head_dim % kQK == 0;
    if (!fits) {
      return InvalidArgument(std::string("engine: bad ") + what +
                             " options: a Q8_0 KV cache needs attention heads of whole 32-value "
                             "blocks (this model's heads are " +
                             std::to_string(c.moe.mla ? c.moe.kv_lora_rank : c.head_dim) +
                             " wide); use --kv-type f16");
    }
  }
  // Check the cache size before allocating the workspace (SessionState::Create checks again for
  // each session's own n_ctx).
  AIRLOCK_TRY(CheckKvCacheSize(c, setup.n_ctx, setup.kv_type));
  return setup;
}

Result<std::unique_ptr<Workspace>> Workspace::Create(const Model& model, const Kernels& kernels,
                                                     int n_threads, int max_rows, int max_ctx,
                                                     TensorType kv_type) {
  const ModelConfig& c = model.config();
  const ExpertConfig& m = c.moe;
  auto ws = std::make_unique<Workspace>();
  ws->model = &model;
  ws->c = &c;
  ws->w = &model.weights();
  ws->k = &kernels;
  ws->max_rows = max_rows;
  ws->max_ctx = max_ctx;
  ws->kv_type = kv_type;
  const std::int64_t d = c.n_embd, b = max_rows, H = c.n_head;
  ws->q_dim = H * c.head_dim;
  ws->kv_dim = std::int64_t{c.n_head_kv} * c.head_dim;
  ws->attn_dim = m.mla ? H * m.v_head_dim : ws->q_dim;
  const std::int64_t ff = std::max(c.n_ff, m.n_ff_shexp);
  const std::int64_t K = m.n_expert_used, kvr = std::int64_t{m.kv_lora_rank} + c.n_rot;
  try {
    ws->pool = std::make_unique<ThreadPool>(n_threads);
    ws->rows.reserve(max_rows);
    ws->out_rows.reserve(max_rows);
    ws->x.resize(b * d);
    ws->xn.resize(b * d);
    ws->tmp.resize(b * d);
    ws->q.resize(b * ws->q_dim);
    ws->attn.resize(b * ws->attn_dim);
    ws->gate.resize(b * ff);
    ws->up.resize(b * ff);
    std::int64_t max_cols = std::max<std::int64_t>({d, ws->q_dim, ws->attn_dim, ff});
    int max_act_rows = max_rows;
    std::int64_t k_dim = c.head_dim, v_dim = c.head_dim;
    if (m.mla) {
      ws->q_lora.resize(b * m.q_lora_rank);
      ws->kv_lat.resize(b * kvr);
      ws->q_nope.resize(b * H * m.qk_nope);
      ws->q_abs.resize(b * H * kvr);
      ws->lat.resize(b * H * m.kv_lora_rank);
      max_cols = std::max<std::int64_t>({max_cols, m.kv_lora_rank, m.q_lora_rank, m.qk_nope});
      max_act_rows = static_cast<int>(b * H);
      k_dim = kvr;
      v_dim = m.kv_lora_rank;
    } else {
      ws->k_new.resize(b * ws->kv_dim);
      ws->v_new.resize(b * ws->kv_dim);
    }
    if (m.n_expert > 0) {
      ws->router_logits.resize(b * m.n_expert);
      ws->route_scratch.resize(2 * m.n_expert + m.n_group);
      ws->choice.resize(b * K);
      ws->choice_weight.resize(b * K);
      ws->order.resize(b * K);
      ws->expert_start.resize(m.n_expert + 2);
      ws->moe_in.resize(b * K * d);
      ws->moe_h.resize(b * K * m.n_ff_exp);
      ws->moe_up.resize(b * K * m.n_ff_exp);
      ws->moe_out.resize(b * K * d);
      max_cols = std::max<std::int64_t>(max_cols, m.n_ff_exp);
      max_act_rows = std::max(max_act_rows, static_cast<int>(b * K));
    }
    ws->act.Reserve(max_act_rows, max_cols);
    if (m.n_expert > 0) ws->act2.Reserve(static_cast<int>(b * K), m.n_ff_exp);
    ws->jobs.resize(2 * std::max(m.n_expert, c.n_head) + 4);
    ws->group_scratch.task_start.reserve(ws->jobs.size() + 1);
    ws->group_scratch.chunk.reserve(ws->jobs.size());
    if (m.mla) {
      ReserveAttention(*ws, k_dim, v_dim, c.n_head, c.n_head);
    } else {
      ReserveAttention(*ws, k_dim, v_dim, c.n_head, c.n_head / c.n_head_kv);
    }
    ws->rope.Init(c, model.weights().rope_freqs);
    ws->rope_cos.resize(b * (c.n_rot / 2));
    ws->rope_sin.resize(b * (c.n_rot / 2));
  } catch (const std::bad_alloc&) {
    return LimitExceeded("engine: not enough memory for the buffers of " +
                         std::to_string(max_rows) + " rows per forward pass");
  } catch (const std::system_error& e) {
    return Internal(std::string("engine: cannot start worker threads: ") + e.what());
  }
  return ws;
}

void Workspace::Forward(float* logits_out) {
  const std::int64_t d = c->n_embd;
  const int n = this->n();
  // x[n][d] = the token embeddings
  const WeightMatrix& embd = w->token_embd;
  for (int i = 0; i < n; ++i) {
    DequantizeRow(embd.type, embd.data + static_cast<std::size_t>(rows[i].token) * embd.row_bytes,
                  x.data() + i * d, d);
  }
  // RoPE angles for each row's position
  rope.Angles(rows.data(), n, rope_cos.data(), rope_sin.data());
  // the architecture's layers (engine/models/<arch>.cc)
  model->spec().layers(*this);
  const int count = static_cast<int>(out_rows.size());
  if (count == 0) return;  // non-final prompt chunks: no logits needed
  // logits[count][n_vocab] = rmsnorm(x) . output, for the selected rows only
  for (int o = 0; o < count; ++o) {
    RmsNorm(x.data() + static_cast<std::int64_t>(out_rows[o]) * d, xn.data() + o * d, d,
            w->output_norm.data(), c->rms_eps);
  }
  act.Set(xn.data(), count, d, d);
  const MatMulJob out{&w->output, logits_out, static_cast<std::size_t>(c->n_vocab)};
  MatMul(*pool, *k, act, &out, 1);
}

Result<std::unique_ptr<SessionState>> SessionState::Create(const Model& model,
                                                           std::shared_ptr<Workspace> ws,
                                                           int n_ctx) {
  const ModelConfig& c = model.config();
  auto s = std::make_unique<SessionState>();
  s->model = &model;
  s->c = &c;
  s->n_ctx = n_ctx;
  AIRLOCK_TRY(CheckKvCacheSize(c, n_ctx, ws->kv_type));  // so the products below cannot overflow
  KvCache& kv = s->kv;
  const KvShape shape = KvShapeOf(c);
  kv.type = ws->kv_type;
  kv.n_layer = c.n_layer;
  kv.n_ctx = n_ctx;
  kv.k_width = shape.k_width;
  kv.v_width = shape.v_width;
  kv.k_row_bytes = KvRowBytes(kv.type, kv.k_width);
  kv.v_row_bytes = KvRowBytes(kv.type, kv.v_width);
  const std::size_t rows = static_cast<std::size_t>(c.n_layer) * n_ctx;
  s->ws = std::move(ws);
  try {
    s->logits.resize(c.n_vocab);
    kv.k.assign(rows * kv.k_row_bytes, 0);
    kv.v.assign(rows * kv.v_row_bytes, 0);
  } catch (const std::bad_alloc&) {
    return LimitExceeded("engine: not enough memory for a session with n_ctx " +
                         std::to_string(n_ctx));
  }
  return s;
}

}  // namespace airlock::engine::internal
