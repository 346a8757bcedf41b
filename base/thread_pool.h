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
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace maximus::base {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  // The process-wide pool of SharedSize() workers, created on first use.
  static ThreadPool& Shared();

  // Workers of the shared pool: $MAXIMUS_THREADS when set, otherwise the CPUs
  // this process may run on (its affinity mask, so `taskset -c 0-1` gives 2).
  // An unparsable MAXIMUS_THREADS is ignored with a warning on stderr.
  static int SharedSize();

  // The value of MAXIMUS_THREADS: a positive integer; INVALID_ARGUMENT
  // naming the variable otherwise.
  static absl::StatusOr<int> ParseThreadCount(absl::string_view text);

  // CPUs in this process's affinity mask (at least 1).
  static int AvailableCpus();

  // Calls fn(i) for every i in [0, n) on at most `parallelism` workers (at
  // most size(), and at most the innermost ParallelismLimit of the calling
  // thread); returns when all calls have returned. Called from one of this
  // pool's own workers it runs fn inline, since waiting on the pool from
  // inside it could deadlock.
  void ParallelFor(size_t n, int parallelism, const std::function<void(size_t)>& fn);

  int size() const { return static_cast<int>(threads_.size()); }

  // While alive, ParallelFor calls made by the constructing thread use at most
  // `max_workers` workers (nested limits: the innermost wins). Lets benchmarks
  // and tests compare one worker with many in one process.
  class ParallelismLimit {
   public:
    explicit ParallelismLimit(int max_workers);
    ~ParallelismLimit();
    ParallelismLimit(const ParallelismLimit&) = delete;
    ParallelismLimit& operator=(const ParallelismLimit&) = delete;

   private:
    int previous_;
  };

 private:
  void Work();

  absl::Mutex mu_;
  std::deque<std::function<void()>> queue_ ABSL_GUARDED_BY(mu_);
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace maximus::base

#endif  // MAXIMUS_BASE_THREAD_POOL_H_
