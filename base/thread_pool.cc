#include "base/thread_pool.h"

#include <algorithm>
#include <atomic>

#include "absl/synchronization/blocking_counter.h"

namespace maximus::base {

ThreadPool::ThreadPool(int threads) {
  threads_.reserve(std::max(1, threads));
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { Work(); });
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

ThreadPool& ThreadPool::Shared() {
  static ThreadPool* pool =
      new ThreadPool(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  return *pool;
}

void ThreadPool::Work() {
  while (true) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](ThreadPool* pool)
               ABSL_NO_THREAD_SAFETY_ANALYSIS { return pool->stop_ || !pool->queue_.empty(); },
          this));
      if (queue_.empty()) return;  // Stopping.
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

void ThreadPool::ParallelFor(size_t n, int parallelism, const std::function<void(size_t)>& fn) {
  const int workers = static_cast<int>(
      std::min<size_t>(std::min(std::max(1, parallelism), size()), std::max<size_t>(1, n)));
  std::atomic<size_t> next{0};
  absl::BlockingCounter done(workers);
  {
    absl::MutexLock lock(&mu_);
    for (int w = 0; w < workers; ++w) {
      queue_.push_back([&] {
        for (size_t i = next.fetch_add(1); i < n; i = next.fetch_add(1)) fn(i);
        done.DecrementCount();
      });
    }
  }
  done.Wait();
}

}  // namespace maximus::base
