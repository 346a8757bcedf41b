// A fixed set of worker threads that lives as long as the process, so that
// per-thread state (the BPE chunk caches) stays warm between batches.

#ifndef MAXIMUS_BASE_THREAD_POOL_H_
#define MAXIMUS_BASE_THREAD_POOL_H_

#include <cstddef>
#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace maximus::base {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // One worker per core, created on first use.
  static ThreadPool& Shared();

  // Calls fn(i) for every i in [0, n) on at most `parallelism` workers (at
  // most size()); returns when all calls have returned.
  void ParallelFor(size_t n, int parallelism, const std::function<void(size_t)>& fn);

  int size() const { return static_cast<int>(threads_.size()); }

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace maximus::base

#endif  // MAXIMUS_BASE_THREAD_POOL_H_
