// A persistent pool of worker threads for the forward pass. Run() publishes a job; the calling
// thread and the workers claim task indices from one atomic counter, and Run() returns as soon
// as every task is finished: it never waits for a worker that is asleep or descheduled (on a
// busy machine the caller simply does more of the tasks itself). Nothing is allocated per Run,
// so the decode loop stays allocation-free. Workers spin briefly between jobs, then sleep on a
// condition variable. One Run() at a time (not re-entrant); a pool belongs to one session.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace airlock::engine {

// A non-owning reference to a callable `void(int task, int thread)`.
class TaskRef {
 public:
  template <typename F>
  TaskRef(F& f)  // NOLINT: implicit by design
      : obj_(&f),
        call_([](void* o, int task, int thread) { (*static_cast<F*>(o))(task, thread); }) {}
  void operator()(int task, int thread) const { call_(obj_, task, thread); }

 private:
  void* obj_;
  void (*call_)(void*, int, int);
};

class ThreadPool {
 public:
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }
  // Runs fn(task, thread) for every task in [0, n_tasks); thread is in [0, size()).
  void Run(int n_tasks, TaskRef fn);

 private:
  void WorkerLoop(int thread_index);
  // Claims and runs tasks of job `generation` until none is left.
  void DoTasks(std::uint32_t generation, int thread_index);

  int n_threads_;
  std::vector<std::thread> workers_;
  // [generation:16][task count:24][next task index:24]: a claim is valid only for the job it names.
  std::atomic<std::uint64_t> cursor_{0};
  std::atomic<const TaskRef*> fn_{nullptr};
  std::atomic<int> done_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable wake_;
};

}  // namespace airlock::engine
