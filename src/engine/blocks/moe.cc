// Expert routing and the grouped expert FFN (see moe.h).
#include "engine/blocks/moe.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/blocks/ffn.h"
#include "engine/internal/workspace.h"

namespace airlock::engine::internal {

namespace {

// Keeps only the experts of the n_group_used best groups in `select` (others -> -inf); a group
// ranks by the sum of its two best selection scores.
void MaskGroups(const ExpertConfig& m, float* select, float* group_score) {
  const int per_group = m.n_expert / m.n_group;
  for (int g = 0; g < m.n_group; ++g) {
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
  for (int g = 0; g < m.n_group; ++g) {
    int rank = 0;  // groups ranked above g (ties: lower index first)
    for (int o = 0; o < m.n_group; ++o) {
      if (group_score[o] > group_score[g] || (group_score[o] == group_score[g] && o < g)) ++rank;
    }
    if (rank >= m.n_group_used) {
      for (int e = g * per_group; e < (g + 1) * per_group; ++e) select[e] = -INFINITY;
    }
  }
}

}  // namespace

void RouteExperts(Workspace& ws, const LayerWeights& lw) {
  const ExpertConfig& m = ws.c->moe;
  const int n = ws.n(), E = m.n_expert, K = m.n_expert_used;
  // router_logits[n][E] = xn . router
  ws.act.Set(ws.xn.data(), n, ws.c->n_embd, ws.c->n_embd);
  const MatMulJob r{&lw.router, ws.router_logits.data(), static_cast<std::size_t>(E)};
  MatMul(*ws.pool, *ws.k, ws.act, &r, 1);
  float* probs = ws.route_scratch.data();
  float* select = probs + E;
  float* group_score = probs + 2 * E;
  for (int t = 0; t < n; ++t) {
    const float* logit = ws.router_logits.data() + static_cast<std::int64_t>(t) * E;
    // probabilities: sigmoid or softmax of the logits
    if (m.gating == ExpertGating::kSigmoid) {
      for (int e = 0; e < E; ++e) probs[e] = 1.0f / (1.0f + std::exp(-logit[e]));
    } else {
      float max = -INFINITY;
      for (int e = 0; e < E; ++e) max = std::max(max, logit[e]);
      double sum = 0;
      for (int e = 0; e < E; ++e) sum += probs[e] = std::exp(logit[e] - max);
      for (int e = 0; e < E; ++e) probs[e] = static_cast<float>(probs[e] / sum);
    }
    // selection scores: probabilities plus the selection bias, within the best groups
    for (int e = 0; e < E; ++e)
      select[e] = probs[e] + (lw.probs_bias.empty() ? 0.0f : lw.probs_bias[e]);
    if (m.n_group > 1 && m.n_group_used < m.n_group) MaskGroups(m, select, group_score);
    // top-K by selection score (ties: lower expert id); weights are the unbiased probabilities
    int* chosen = ws.choice.data() + static_cast<std::int64_t>(t) * K;
    float* wt = ws.choice_weight.data() + static_cast<std::int64_t>(t) * K;
    for (int s = 0; s < K; ++s) {
      int best = -1;
      for (int e = 0; e < E; ++e) {
        bool taken = false;
        for (int q = 0; q < s; ++q) taken |= chosen[q] == e;
        if (!taken && (best < 0 || select[e] > select[best])) best = e;
      }
      chosen[s] = best;
      wt[s] = probs[best];
    }
    // optional renormalization and scaling
    if (m.norm_weights) {
      float sum = 0;
      for (int s = 0; s < K; ++s) sum += wt[s];
      sum = std::max(sum, 6.103515625e-5f);
      for (int s = 0; s < K; ++s) wt[s] /= sum;
    }
    if (m.weights_scale != 1.0f) {
      for (int s = 0; s < K; ++s) wt[s] *= m.weights_scale;
    }
  }
}

void ExpertFfn(Workspace& ws, const LayerWeights& lw) {
  const ExpertConfig& m = ws.c->moe;
  const int n = ws.n(), E = m.n_expert, K = m.n_expert_used, ffe = m.n_ff_exp;
  const std::int64_t d = ws.c->n_embd;
  // (row, slot) pairs sorted by expert (counting sort): expert e's pairs are
  // order[expert_start[e] .. expert_start[e + 1])
  std::vector<int>& start = ws.expert_start;
  std::fill(start.begin(), start.end(), 0);
  for (int p = 0; p < n * K; ++p) ++start[ws.choice[p] + 2];
  for (int e = 0; e < E; ++e) start[e + 2] += start[e + 1];
  for (int p = 0; p < n * K; ++p) ws.order[start[ws.choice[p] + 1]++] = p;
  // moe_in[n K][d]: the xn row of each pair, in expert order
  for (int r = 0; r < n * K; ++r) {
    std::memcpy(ws.moe_in.data() + r * d, ws.xn.data() + (ws.order[r] / K) * d, sizeof(float) * d);
  }
  // moe_h, moe_up [n K][ffe] = each expert's gate / up over its own rows
  ws.act.Set(ws.moe_in.data(), n * K, d, d);
  int n_jobs = 0;
  for (int e = 0; e < E; ++e) {
    const int a0 = start[e], a1 = start[e + 1];
    if (a0 == a1) continue;  // no row chose this expert: its weights are not read
    ws.jobs[n_jobs++] = {lw.gate_exps.Slice(e), a0, a1, ws.moe_h.data() + a0 * ffe,
                         static_cast<std::size_t>(ffe)};
    ws.jobs[n_jobs++] = {lw.up_exps.Slice(e), a0, a1, ws.moe_up.data() + a0 * ffe,
                         static_cast<std::size_t>(ffe)};
  }
  GroupedMatMul(*ws.pool, *ws.k, ws.act, ws.jobs.data(), n_jobs, ws.group_scratch);
  // moe_h = silu(moe_h) * moe_up
  for (std::int64_t i = 0; i < std::int64_t{n} * K * ffe; ++i)
    ws.moe_h[i] = Silu(ws.moe_h[i]) * ws.moe_up[i];
  // moe_out[n K][d] = each expert's down projection over its rows
  ws.act2.Set(ws.moe_h.data(), n * K, ffe, ffe);
  n_jobs = 0;
  for (int e = 0; e < E; ++e) {
    const int a0 = start[e], a1 = start[e + 1];
    if (a0 == a1) continue;
    ws.jobs[n_jobs++] = {lw.down_exps.Slice(e), a0, a1, ws.moe_out.data() + a0 * d,
                         static_cast<std::size_t>(d)};
  }
  GroupedMatMul(*ws.pool, *ws.k, ws.act2, ws.jobs.data(), n_jobs, ws.group_scratch);
  // tmp[i] = sum over row i's pairs of weight * expert output
  std::fill(ws.tmp.begin(), ws.tmp.begin() + n * d, 0.0f);
  for (int r = 0; r < n * K; ++r) {
    const int p = ws.order[r];
    const float wgt = ws.choice_weight[p];
    float* out = ws.tmp.data() + (p / K) * d;
    const float* o = ws.moe_out.data() + r * d;
    for (std::int64_t e = 0; e < d; ++e) out[e] += wgt * o[e];
  }
}

void AddSharedExpert(Workspace& ws, const LayerWeights& lw) {
  if (!lw.gate_shexp.valid()) return;
  const int n = ws.n();
  const std::int64_t d = ws.c->n_embd;
  // moe_out[n][d] = SwiGLU_shared(xn) (moe_out is free once ExpertFfn has summed it)
  float* shared = ws.moe_out.data();
  SwiGluFfn(ws, lw.gate_shexp, lw.up_shexp, lw.down_shexp, shared);
  // tmp += gate * shared, gate = sigmoid(shexp_gate . xn) (qwen2moe) or 1
  for (int t = 0; t < n; ++t) {
    float g = 1.0f;
    if (!lw.shexp_gate.empty()) {
      double dot = 0;
      const float* xt = ws.xn.data() + t * d;
      for (std::int64_t e = 0; e < d; ++e) dot += static_cast<double>(lw.shexp_gate[e]) * xt[e];
      g = 1.0f / (1.0f + std::exp(-static_cast<float>(dot)));
    }
    float* out = ws.tmp.data() + t * d;
    const float* o = shared + t * d;
    for (std::int64_t e = 0; e < d; ++e) out[e] += g * o[e];
  }
}

}  // namespace airlock::engine::internal
