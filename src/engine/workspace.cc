// The forward pass every architecture shares (embeddings, the architecture's layer loop from the
// registry, the output head), the workspace's buffers, and the KV cache's layout and storage.
#include "engine/internal/workspace.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <new>
#include <string>
#include <system_error>
#include <thread>

#include "core/bytes.h"
#include "core/memory.h"
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

namespace {

std::uint64_t RoundUp(std::uint64_t x, std::uint64_t m) { return (x + m - 1) / m * m; }

// "402653184 bytes (384.0 MiB)".
std::string BytesText(std::uint64_t bytes) {
  char mib[48];
  std::snprintf(mib, sizeof(mib), " (%.1f MiB)", static_cast<double>(bytes) / (1 << 20));
  return std::to_string(bytes) + " bytes" + mib;
}

const char* KvTypeText(TensorType t) {
  return t == TensorType::kF32 ? "f32" : t == TensorType::kQ8_0 ? "q8_0" : "f16";
}

}  // namespace

std::uint64_t SessionBytes(const ModelConfig& c, int n_ctx, TensorType kv_type) {
  const KvShape shape = KvShapeOf(c);
  const std::uint64_t row = KvRowBytes(kv_type, shape.k_width) + KvRowBytes(kv_type, shape.v_width);
  return static_cast<std::uint64_t>(c.n_layer) * std::max(n_ctx, 0) * row +
         std::uint64_t{4} * c.n_vocab;
}

std::uint64_t PassBufferBytes(const ModelConfig& c, int max_rows, int threads) {
  // The same widths as Workspace::Create below.
  const ExpertConfig& m = c.moe;
  const std::uint64_t d = c.n_embd, b = std::max(max_rows, 1), H = c.n_head;
  const std::uint64_t q_dim = H * c.head_dim;
  const std::uint64_t kv_dim = static_cast<std::uint64_t>(c.n_head_kv) * c.head_dim;
  const std::uint64_t attn_dim = m.mla ? H * m.v_head_dim : q_dim;
  const std::uint64_t ff = std::max(c.n_ff, m.n_ff_shexp);
  const std::uint64_t K = m.n_expert_used;
  const std::uint64_t kvr = static_cast<std::uint64_t>(m.kv_lora_rank) + c.n_rot;
  std::uint64_t floats = b * (3 * d + q_dim + attn_dim + 2 * ff + c.n_rot);  // + rope cos/sin
  std::uint64_t max_cols = std::max<std::uint64_t>({d, q_dim, attn_dim, ff});
  std::uint64_t act_rows = b, k_dim = c.head_dim, v_dim = c.head_dim, group = 1, n_kv = 1;
  if (m.mla) {
    floats += b * (m.q_lora_rank + kvr + H * m.qk_nope + H * kvr + H * m.kv_lora_rank);
    max_cols = std::max<std::uint64_t>({max_cols, std::uint64_t(m.kv_lora_rank),
                                        std::uint64_t(m.q_lora_rank), std::uint64_t(m.qk_nope)});
    act_rows = b * H;
    k_dim = kvr;
    v_dim = m.kv_lora_rank;
    group = H;
  } else {
    floats += 2 * b * kv_dim;
    n_kv = std::max(c.n_head_kv, 1);
    group = H / n_kv;
  }
  std::uint64_t bytes = 0;
  if (m.n_expert > 0) {
    floats += b * m.n_expert + 2 * m.n_expert + m.n_group + b * K * (2 * d + 2 * m.n_ff_exp);
    bytes += 4 * (3 * b * K + m.n_expert + 2);  // choice, choice_weight, order, expert_start
    max_cols = std::max<std::uint64_t>(max_cols, m.n_ff_exp);
    act_rows = std::max(act_rows, b * K);
  }
  bytes += 4 * floats;
  // The activation buffers keep every format of their widest rows (ActivationBuffer::Reserve).
  const std::uint64_t act_cols = RoundUp(max_cols, kQKK);
  for (int f = 0; f < kActFormatCount; ++f) {
    const std::uint64_t row = ActRowBytes(static_cast<ActFormat>(f), act_cols);
    bytes += act_rows * row;
    if (m.n_expert > 0)
      bytes += b * K * ActRowBytes(static_cast<ActFormat>(f), RoundUp(m.n_ff_exp, kQKK));
  }
  // Attention (blocks/attention.cc): per thread a tile set of at most `lanes` query lanes
  // (transposed queries, a tile of keys and values, scores, the accumulator, five per-lane
  // vectors, each 64-byte aligned), the split-K partial results and the task lists.
  const std::uint64_t lanes = RoundUp(std::max<std::uint64_t>(128, group), 16), tile = 64;
  const std::uint64_t tile_floats =
      k_dim * lanes + tile * k_dim + tile * v_dim + tile * lanes + v_dim * lanes + 5 * lanes;
  bytes += std::uint64_t(std::max(threads, 1)) * (4 * tile_floats + 10 * 64);
  const std::uint64_t split_slots = 2 * 32 * n_kv;
  bytes += 4 * (2 + v_dim) * RoundUp(group, 16) * split_slots;
  bytes += sizeof(AttendTask) * (b * n_kv + split_slots) + sizeof(AttendMerge) * split_slots;
  return bytes;
}

Status CheckMemoryFits(const ModelConfig& c, const EngineSetup& setup, int sessions,
                       bool with_buffers, std::uint64_t available) {
  sessions = std::max(sessions, 1);
  const std::uint64_t per_session = SessionBytes(c, setup.n_ctx, setup.kv_type);
  const std::uint64_t buffers =
      with_buffers ? PassBufferBytes(c, setup.max_rows, setup.threads) : 0;
  const std::uint64_t needed = per_session * sessions + buffers;  // checked by CheckKvCacheSize
  if (needed <= available) return {};
  // The largest context whose sessions and buffers fit, in whole 256-token steps when it is that
  // long, and never above the training context.
  const std::uint64_t per_token = std::max<std::uint64_t>(
      SessionBytes(c, 1, setup.kv_type) - SessionBytes(c, 0, setup.kv_type), 1);
  const std::uint64_t fixed = buffers + SessionBytes(c, 0, setup.kv_type) * sessions;
  std::uint64_t fits = available > fixed ? (available - fixed) / (per_token * sessions) : 0;
  fits = std::min<std::uint64_t>(fits, std::min(c.n_ctx_train, 1 << 20));
  if (fits >= 512) fits = fits / 256 * 256;
  std::string msg = "engine: not enough memory for a context of " + std::to_string(setup.n_ctx) +
                    " tokens: the " + KvTypeText(setup.kv_type) + " KV cache needs " +
                    BytesText(per_session) +
                    (sessions > 1 ? " per session x " + std::to_string(sessions) : "");
  if (with_buffers) msg += " and the per-pass buffers " + BytesText(buffers);
  msg += ", " + BytesText(needed) + " in all, and " + BytesText(available) + " are available; ";
  // A Q8_0 cache holds about twice the tokens of F16, where the model's heads allow it.
  const bool q8_possible =
      setup.kv_type != TensorType::kQ8_0 &&
      (c.moe.mla ? c.moe.kv_lora_rank % kQK == 0 && c.n_rot % kQK == 0 : c.head_dim % kQK == 0);
  if (fits == 0) {
    msg += "no context fits (free memory";
    msg += q8_possible ? ", or try --kv-type q8_0)" : ")";
  } else {
    msg += "the largest context that fits is " + std::to_string(fits) + " tokens (--ctx " +
           std::to_string(fits) + ")";
    if (q8_possible) msg += ", or more with --kv-type q8_0";
  }
  return LimitExceeded(msg);
}

Result<EngineSetup> ResolveSetup(const ModelConfig& c, int n_ctx, int n_threads, int max_rows,
                                 const Kernels* kernels, bool exact_math, KvCacheType kv_type,
                                 int sessions, const char* what) {
  if (n_ctx < 0 || n_threads < 0 || max_rows < 0) {
    return InvalidArgument(std::string("engine: bad ") + what + " options: negative value");
  }
  EngineSetup setup;
  setup.n_ctx = n_ctx > 0 ? n_ctx : std::min(c.n_ctx_train, 4096);
  if (setup.n_ctx > (1 << 20)) {
    return InvalidArgument(std::string("engine: bad ") + what + " options: n_ctx above 1M");
  }
  // Positions past the training context are untrained: the engine applies only the rope scaling
  // the file declares (whose context_length already counts it), so it refuses them.
  if (c.n_ctx_train > 0 && setup.n_ctx > c.n_ctx_train) {
    return InvalidArgument("engine: a context of " + std::to_string(setup.n_ctx) +
                           " tokens is above the model's training context of " +
                           std::to_string(c.n_ctx_train) + " tokens; use --ctx " +
                           std::to_string(c.n_ctx_train) + " or less");
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
  // each session's own n_ctx), then that the caches and the buffers fit the memory available.
  AIRLOCK_TRY(CheckKvCacheSize(c, setup.n_ctx, setup.kv_type));
  sessions = std::clamp(sessions, 1, 4096);
  AIRLOCK_TRY(
      CheckMemoryFits(c, setup, sessions, /*with_buffers=*/true, core::AvailableMemoryBytes()));
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

std::uint64_t Workspace::AllocatedBytes() const {
  std::uint64_t bytes = 0;
  for (const std::vector<float>* v : {&x,
                                      &xn,
                                      &tmp,
                                      &q,
                                      &k_new,
                                      &v_new,
                                      &attn,
                                      &gate,
                                      &up,
                                      &q_lora,
                                      &kv_lat,
                                      &q_nope,
                                      &q_abs,
                                      &lat,
                                      &router_logits,
                                      &route_scratch,
                                      &choice_weight,
                                      &moe_in,
                                      &moe_h,
                                      &moe_up,
                                      &moe_out,
                                      &rope_cos,
                                      &rope_sin,
                                      &attn_split}) {
    bytes += v->capacity() * sizeof(float);
  }
  for (const std::vector<int>* v : {&choice, &order, &expert_start})
    bytes += v->capacity() * sizeof(int);
  bytes += attn_scratch.capacity() + act.reserved_bytes() + act2.reserved_bytes();
  bytes +=
      attn_tasks.capacity() * sizeof(AttendTask) + attn_merges.capacity() * sizeof(AttendMerge);
  return bytes;
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
  EngineSetup one;
  one.n_ctx = n_ctx;
  one.kv_type = ws->kv_type;
  AIRLOCK_TRY(CheckMemoryFits(c, one, 1, /*with_buffers=*/false, core::AvailableMemoryBytes()));
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
