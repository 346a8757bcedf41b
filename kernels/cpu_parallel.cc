#include "kernels/cpu_parallel.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "base/thread_pool.h"

namespace maximus::kernels {
namespace {

struct BlasThreads {
  absl::Mutex mu;
  int users ABSL_GUARDED_BY(mu) = 0;
  int saved ABSL_GUARDED_BY(mu) = 1;  // The thread count before the first user.
};

BlasThreads& GlobalBlasThreads() {
  static BlasThreads* state = new BlasThreads;
  return *state;
}

}  // namespace

SingleThreadedBlas::SingleThreadedBlas() {
  BlasThreads& state = GlobalBlasThreads();
  absl::MutexLock lock(&state.mu);
  if (state.users++ == 0) {
    state.saved = openblas_get_num_threads();
    if (state.saved > 1) openblas_set_num_threads(1);
  }
}

SingleThreadedBlas::~SingleThreadedBlas() {
  BlasThreads& state = GlobalBlasThreads();
  absl::MutexLock lock(&state.mu);
  if (--state.users == 0 && state.saved > 1) openblas_set_num_threads(state.saved);
}

absl::Status ParallelTasks(
    int64_t tasks,
    const std::function<absl::Status(int64_t task, std::vector<float>& scratch)>& fn) {
  if (tasks <= 0) return absl::OkStatus();
  SingleThreadedBlas single_threaded_blas;
  base::ThreadPool& pool = base::ThreadPool::Shared();
  const int workers = static_cast<int>(std::min<int64_t>(pool.size(), tasks));
  std::vector<absl::Status> statuses(tasks);
  std::atomic<int64_t> next{0};
  pool.ParallelFor(workers, workers, [&](size_t) {
    std::vector<float> scratch;
    for (int64_t task = next.fetch_add(1); task < tasks; task = next.fetch_add(1)) {
      statuses[task] = fn(task, scratch);
    }
  });
  for (absl::Status& status : statuses) {
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

}  // namespace maximus::kernels
