// Matrix products of weight matrices (any supported type, memory-mapped) with a batch of
// activation rows. ActivationBuffer converts a batch of float rows to each activation format at
// most once, so the matrices reading the same input (q/k/v, gate/up) share one quantization.
// MatMul splits the rows of one or several matrices into tasks for the thread pool (one barrier
// for all of them). No allocation after Reserve().
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/internal/thread_pool.h"
#include "engine/kernels.h"

namespace airlock::engine {

struct WeightMatrix {
  TensorType type = TensorType::kF32;
  const std::uint8_t* data = nullptr;
  std::int64_t rows = 0;  // output features
  std::int64_t cols = 0;  // input features (contiguous)
  std::size_t row_bytes = 0;
  bool valid() const { return data != nullptr; }
};

// The activation format a kernel table uses for weights of `type`.
ActFormat ActFormatFor(const Kernels& kernels, TensorType type);

class ActivationBuffer {
 public:
  void Reserve(int max_rows, std::int64_t max_cols);
  // Points at `n_rows` float rows of `cols` values, `stride` floats apart (not copied; must stay
  // valid until the next Set). Invalidates previous conversions.
  void Set(const float* x, int n_rows, std::int64_t cols, std::size_t stride);
  // Row `i` in `format`, converting the whole batch (in parallel) on first use.
  const void* Row(ActFormat format, int i, ThreadPool& pool, const Kernels& kernels);
  int rows() const { return n_rows_; }
  std::int64_t cols() const { return cols_; }
  // Bytes reserved for the converted rows.
  std::size_t reserved_bytes() const {
    std::size_t bytes = 0;
    for (const auto& s : storage_) bytes += s.capacity();
    return bytes;
  }

 private:
  const float* x_ = nullptr;
  int n_rows_ = 0;
  std::int64_t cols_ = 0;
  std::size_t stride_ = 0;
  bool ready_[kActFormatCount] = {};
  std::size_t row_bytes_[kActFormatCount] = {};
  std::vector<std::uint8_t> storage_[kActFormatCount];
};

struct MatMulJob {
  const WeightMatrix* w;
  float* out;       // out[t * ldo + r]
  std::size_t ldo;  // floats between the outputs of consecutive activation rows
};

// Runs every job over all rows of `act` (up to 4 jobs) with one pool run.
void MatMul(ThreadPool& pool, const Kernels& kernels, ActivationBuffer& act, const MatMulJob* jobs,
            int n_jobs);

// One matrix over its own range of activation rows [a0, a1): out[(t - a0) * ldo + r]. Used where
// different rows go through different matrices: the experts a batch's rows were routed to (each
// selected expert is read once for all its rows), and MLA's per-head products.
struct GroupJob {
  WeightMatrix w;
  int a0, a1;
  float* out;
  std::size_t ldo;
};
struct GroupScratch {
  std::vector<int> task_start;
  std::vector<std::int64_t> chunk;
};
// Runs every job in one pool run. `scratch` holds the task table (reserve it to avoid
// allocation in the decode loop).
void GroupedMatMul(ThreadPool& pool, const Kernels& kernels, ActivationBuffer& act,
                   const GroupJob* jobs, int n_jobs, GroupScratch& scratch);

}  // namespace airlock::engine
