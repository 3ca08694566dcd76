// SwiGLU FFN (see ffn.h).
#include "engine/blocks/ffn.h"

#include "engine/internal/workspace.h"

namespace airlock::engine::internal {

void SwiGluFfn(Workspace& ws, const WeightMatrix& w_gate, const WeightMatrix& w_up,
               const WeightMatrix& w_down, float* out) {
  const int n = ws.n();
  const std::int64_t d = ws.c->n_embd, ff = w_gate.rows;
  // gate[n][ff], up[n][ff] = xn . w_gate, w_up (one quantization of xn for both)
  ws.act.Set(ws.xn.data(), n, d, d);
  const MatMulJob gate_up[2] = {{&w_gate, ws.gate.data(), static_cast<std::size_t>(ff)},
                                {&w_up, ws.up.data(), static_cast<std::size_t>(ff)}};
  MatMul(*ws.pool, *ws.k, ws.act, gate_up, 2);
  // gate = silu(gate) * up
  for (std::int64_t e = 0; e < n * ff; ++e) ws.gate[e] = Silu(ws.gate[e]) * ws.up[e];
  // out[n][d] = gate . w_down
  ws.act.Set(ws.gate.data(), n, ff, ff);
  const MatMulJob down{&w_down, out, static_cast<std::size_t>(d)};
  MatMul(*ws.pool, *ws.k, ws.act, &down, 1);
}

}  // namespace airlock::engine::internal
