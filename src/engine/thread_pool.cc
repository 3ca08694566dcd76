#include "engine/internal/thread_pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define AIRLOCK_CPU_RELAX() _mm_pause()
#elif defined(__aarch64__)
#define AIRLOCK_CPU_RELAX() __asm__ __volatile__("yield")
#else
#define AIRLOCK_CPU_RELAX() ((void)0)
#endif

namespace airlock::engine {

namespace {
constexpr int kSpinIterations = 4000;
// The cursor packs [generation:16][task count:24][next task:24]. The task count travels in the
// same atomic as the claim index, so a worker still looking at an old job can never claim a task
// against the next job's count (which once made Run() miscount and wait forever).
constexpr int kTaskBits = 24;
constexpr std::uint64_t kTaskMask = (std::uint64_t{1} << kTaskBits) - 1;
std::uint32_t GenerationOf(std::uint64_t cursor) {
  return static_cast<std::uint32_t>(cursor >> (2 * kTaskBits));
}
int TaskCountOf(std::uint64_t cursor) {
  return static_cast<int>((cursor >> kTaskBits) & kTaskMask);
}
int NextTaskOf(std::uint64_t cursor) { return static_cast<int>(cursor & kTaskMask); }
}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
  workers_.reserve(n_threads_ - 1);
  for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::DoTasks(std::uint32_t generation, int thread_index) {
  std::uint64_t cur = cursor_.load(std::memory_order_acquire);
  for (;;) {
    if (GenerationOf(cur) != generation) return;  // a newer job: not ours to claim here
    const int task = NextTaskOf(cur);
    if (task >= TaskCountOf(cur)) return;
    if (!cursor_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel,
                                       std::memory_order_acquire)) {
      continue;  // cur was reloaded
    }
    // The claim pins the job: Run() cannot publish another one before this task is done.
    (*fn_.load(std::memory_order_acquire))(task, thread_index);
    done_.fetch_add(1, std::memory_order_acq_rel);
    cur = cursor_.load(std::memory_order_acquire);
  }
}

void ThreadPool::Run(int n_tasks, TaskRef fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1 || static_cast<std::uint64_t>(n_tasks) > kTaskMask) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  const std::uint32_t generation =
      (GenerationOf(cursor_.load(std::memory_order_relaxed)) + 1) & 0xffffu;
  fn_.store(&fn, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  {
    // Under the lock so that a worker about to sleep cannot miss the new job.
    std::lock_guard<std::mutex> lock(mu_);
    cursor_.store((static_cast<std::uint64_t>(generation) << (2 * kTaskBits)) |
                      (static_cast<std::uint64_t>(n_tasks) << kTaskBits),
                  std::memory_order_release);
  }
  wake_.notify_all();
  DoTasks(generation, 0);
  int spins = 0;
  while (done_.load(std::memory_order_acquire) != n_tasks) {
    if (++spins < kSpinIterations) {
      AIRLOCK_CPU_RELAX();
    } else {
      std::this_thread::yield();
    }
  }
}

void ThreadPool::WorkerLoop(int thread_index) {
  std::uint32_t seen = 0;  // the generation at construction
  for (;;) {
    int spins = 0;
    std::uint32_t now;
    while ((now = GenerationOf(cursor_.load(std::memory_order_acquire))) == seen) {
      if (stop_.load(std::memory_order_acquire)) return;
      if (++spins < kSpinIterations) {
        AIRLOCK_CPU_RELAX();
      } else {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] {
          return stop_.load() || GenerationOf(cursor_.load(std::memory_order_acquire)) != seen;
        });
      }
    }
    seen = now;
    DoTasks(now, thread_index);
  }
}

}  // namespace airlock::engine
