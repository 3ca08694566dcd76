#include "engine/internal/matmul.h"

#include <algorithm>

namespace airlock::engine {

ActFormat ActFormatFor(const Kernels& kernels, TensorType type) {
  if (kernels.float_activations) return ActFormat::kF32;
  return GetTensorTypeInfo(static_cast<std::uint32_t>(type))->act;
}

void ActivationBuffer::Reserve(int max_rows, std::int64_t max_cols) {
  for (int f = 0; f < kActFormatCount; ++f) {
    // Q8 formats need max_cols to be a multiple of their block; round up for the capacity.
    const std::int64_t cols = (max_cols + kQKK - 1) / kQKK * kQKK;
    const std::size_t bytes = ActRowBytes(static_cast<ActFormat>(f), cols);
    if (storage_[f].size() < bytes * max_rows) storage_[f].resize(bytes * max_rows);
  }
}

void ActivationBuffer::Set(const float* x, int n_rows, std::int64_t cols, std::size_t stride) {
  x_ = x;
  n_rows_ = n_rows;
  cols_ = cols;
  stride_ = stride;
  for (int f = 0; f < kActFormatCount; ++f) {
    ready_[f] = false;
    row_bytes_[f] = ActRowBytes(static_cast<ActFormat>(f), cols);
  }
}

const void* ActivationBuffer::Row(ActFormat format, int i, ThreadPool& pool,
                                  const Kernels& kernels) {
  const int f = static_cast<int>(format);
  if (format == ActFormat::kF32) return x_ + i * stride_;
  if (!ready_[f]) {
    auto convert = [&](int task, int) {
      kernels.quantize[f](x_ + task * stride_, storage_[f].data() + task * row_bytes_[f], cols_);
    };
    pool.Run(n_rows_, convert);
    ready_[f] = true;
  }
  return storage_[f].data() + i * row_bytes_[f];
}

void MatMul(ThreadPool& pool, const Kernels& kernels, ActivationBuffer& act, const MatMulJob* jobs,
            int n_jobs) {
  // Convert the activations first (once per format), outside the row tasks.
  const int n_tokens = act.rows();
  ActFormat formats[4];
  for (int j = 0; j < n_jobs; ++j) {
    formats[j] = ActFormatFor(kernels, jobs[j].w->type);
    act.Row(formats[j], 0, pool, kernels);
  }
  // Row chunks. For a large batch, a chunk of weight rows stays in cache while every activation
  // row passes over it. For one token (or up to 8: one tile group) the matrix is streamed from
  // memory once: chunks of contiguous
  // rows as long as possible (threads that alternate short chunks break each other's streams:
  // measured 26 GB/s with 32-row chunks against 45 GB/s with 256-row chunks on 2 threads), yet
  // about four per thread so that a thread the OS delays does not hold up the others.
  // Multiples of 8 rows (the SIMD kernels' row groups). Results do not depend on the chunking.
  std::int64_t chunk[4];
  int task_start[5];
  task_start[0] = 0;
  for (int j = 0; j < n_jobs; ++j) {
    const std::int64_t rows = jobs[j].w->rows;
    if (n_tokens > 8) {
      chunk[j] = 16;
    } else {  // one token, or a few (several sessions' decode tokens in one batched step)
      const std::int64_t per_task = (rows + 4 * pool.size() - 1) / (4 * pool.size());
      chunk[j] = std::max<std::int64_t>(32, (per_task + 7) / 8 * 8);
    }
    task_start[j + 1] = task_start[j] + static_cast<int>((rows + chunk[j] - 1) / chunk[j]);
  }
  auto run = [&](int task, int) {
    int j = 0;
    while (task >= task_start[j + 1]) ++j;
    const MatMulJob& job = jobs[j];
    const WeightMatrix& w = *job.w;
    const std::int64_t r0 = static_cast<std::int64_t>(task - task_start[j]) * chunk[j];
    const int nr = static_cast<int>(std::min<std::int64_t>(chunk[j], w.rows - r0));
    const DotRowsFn dot = kernels.dot[static_cast<int>(w.type)];
    const DotTileFn tile = kernels.tile[static_cast<int>(w.type)];
    const std::uint8_t* wrows = w.data + r0 * w.row_bytes;
    if (tile != nullptr && n_tokens > 1) {
      const auto* a0 = static_cast<const std::uint8_t*>(act.Row(formats[j], 0, pool, kernels));
      const std::size_t stride =
          n_tokens > 1
              ? static_cast<const std::uint8_t*>(act.Row(formats[j], 1, pool, kernels)) - a0
              : 0;
      tile(w.cols, wrows, w.row_bytes, nr, a0, stride, n_tokens, job.out + r0, job.ldo);
      return;
    }
    for (int t = 0; t < n_tokens; ++t) {
      const void* a = act.Row(formats[j], t, pool, kernels);
      dot(w.cols, wrows, w.row_bytes, nr, a, job.out + t * job.ldo + r0);
    }
  };
  pool.Run(task_start[n_jobs], run);
}

}  // namespace airlock::engine

namespace airlock::engine {

void GroupedMatMul(ThreadPool& pool, const Kernels& kernels, ActivationBuffer& act,
                   const GroupJob* jobs, int n_jobs, GroupScratch& scratch) {
  if (n_jobs == 0) return;
  int max_rows = 0;
  for (int j = 0; j < n_jobs; ++j) {
    act.Row(ActFormatFor(kernels, jobs[j].w.type), 0, pool, kernels);  // convert before the tasks
    max_rows = std::max(max_rows, jobs[j].a1 - jobs[j].a0);
  }
  // As in MatMul: with few activation rows per matrix the weights are streamed once, so each
  // task is a long run of contiguous rows (about four tasks per thread over all the matrices; a
  // small matrix is one task); with many rows, short chunks stay in cache.
  std::int64_t total_rows = 0;
  for (int j = 0; j < n_jobs; ++j) total_rows += jobs[j].w.rows;
  const std::int64_t per_task = (total_rows + 4 * pool.size() - 1) / (4 * pool.size());
  const std::int64_t long_run = std::max<std::int64_t>(32, (per_task + 7) / 8 * 8);
  std::vector<int>& task_start = scratch.task_start;
  std::vector<std::int64_t>& chunk = scratch.chunk;
  task_start.resize(n_jobs + 1);
  chunk.resize(n_jobs);
  task_start[0] = 0;
  for (int j = 0; j < n_jobs; ++j) {
    chunk[j] = max_rows > 8 ? 16 : long_run;
    task_start[j + 1] =
        task_start[j] + static_cast<int>((jobs[j].w.rows + chunk[j] - 1) / chunk[j]);
  }
  auto run = [&](int task, int) {
    const int j = static_cast<int>(
        std::upper_bound(task_start.begin(), task_start.begin() + n_jobs + 1, task) -
        task_start.begin() - 1);
    const GroupJob& job = jobs[j];
    const WeightMatrix& w = job.w;
    const ActFormat format = ActFormatFor(kernels, w.type);
    const std::int64_t r0 = static_cast<std::int64_t>(task - task_start[j]) * chunk[j];
    const int nr = static_cast<int>(std::min<std::int64_t>(chunk[j], w.rows - r0));
    const std::uint8_t* wrows = w.data + r0 * w.row_bytes;
    const int ntok = job.a1 - job.a0;
    const DotTileFn tile = kernels.tile[static_cast<int>(w.type)];
    if (tile != nullptr && ntok > 1) {
      const auto* a0 = static_cast<const std::uint8_t*>(act.Row(format, job.a0, pool, kernels));
      const auto* a1 = static_cast<const std::uint8_t*>(act.Row(format, job.a0 + 1, pool, kernels));
      tile(w.cols, wrows, w.row_bytes, nr, a0, static_cast<std::size_t>(a1 - a0), ntok,
           job.out + r0, job.ldo);
      return;
    }
    const DotRowsFn dot = kernels.dot[static_cast<int>(w.type)];
    for (int t = 0; t < ntok; ++t) {
      dot(w.cols, wrows, w.row_bytes, nr, act.Row(format, job.a0 + t, pool, kernels),
          job.out + t * job.ldo + r0);
    }
  };
  pool.Run(task_start[n_jobs], run);
}

}  // namespace airlock::engine
