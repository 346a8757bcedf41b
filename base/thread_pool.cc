#include "base/thread_pool.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"

namespace maximus::base {
namespace {

// 0: no limit on this thread's ParallelFor calls.
thread_local int tls_parallelism_limit = 0;
// The pool whose worker this thread is, if any.
thread_local const ThreadPool* tls_worker_of = nullptr;

}  // namespace

ThreadPool::ThreadPool(int threads) {
  threads_.reserve(std::max(1, threads));
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] {
      tls_worker_of = this;
      Work();
    });
  }
}

ThreadPool::~ThreadPool() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  for (std::thread& thread : threads_) thread.join();
}

absl::StatusOr<int> ThreadPool::ParseThreadCount(absl::string_view text) {
  int threads = 0;
  if (!absl::SimpleAtoi(text, &threads) || threads < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("MAXIMUS_THREADS must be a positive integer, got \"", text, "\""));
  }
  return threads;
}

int ThreadPool::AvailableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

int ThreadPool::SharedSize() {
  if (const char* env = std::getenv("MAXIMUS_THREADS"); env != nullptr && *env != '\0') {
    absl::StatusOr<int> threads = ParseThreadCount(env);
    if (threads.ok()) return *threads;
    std::fprintf(stderr, "%s; using the %d available CPUs\n",
                 std::string(threads.status().message()).c_str(), AvailableCpus());
  }
  return AvailableCpus();
}

ThreadPool& ThreadPool::Shared() {
  static ThreadPool* pool = new ThreadPool(SharedSize());
  return *pool;
}

ThreadPool::ParallelismLimit::ParallelismLimit(int max_workers) : previous_(tls_parallelism_limit) {
  tls_parallelism_limit = std::max(1, max_workers);
}

ThreadPool::ParallelismLimit::~ParallelismLimit() { tls_parallelism_limit = previous_; }

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
  if (tls_worker_of == this) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  int limit = std::min(std::max(1, parallelism), size());
  if (tls_parallelism_limit > 0) limit = std::min(limit, tls_parallelism_limit);
  const int workers = static_cast<int>(std::min<size_t>(limit, std::max<size_t>(1, n)));
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
