// How the CPU references of the losses spread over cores: a fixed partition
// into tasks (tiles of the vocabulary, blocks of rows) that depends only on
// the problem's shape, run on the shared thread pool, each task's results
// kept apart and combined in task order. The results are then the same
// bit for bit on any number of threads.

#ifndef MAXIMUS_KERNELS_CPU_PARALLEL_H_
#define MAXIMUS_KERNELS_CPU_PARALLEL_H_

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/status/status.h"
#include "base/thread_pool.h"

namespace maximus::kernels {

// While any instance is alive, OpenBLAS runs each GEMM on the calling thread
// alone: the pool's workers already use every core, and a BLAS thread team
// per worker would oversubscribe them. Instances may overlap (nested or on
// several threads); the last one to go restores the previous thread count.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;
};

// Calls fn(task, scratch) for every task in [0, tasks) on the shared pool,
// with single-threaded BLAS. `scratch` belongs to the worker running the task
// and lives across its tasks, so a buffer resized once serves them all.
// Returns the error of the lowest-numbered failed task, or OK.
absl::Status ParallelTasks(
    int64_t tasks,
    const std::function<absl::Status(int64_t task, std::vector<float>& scratch)>& fn);

// Calls fn(begin, end) over [0, n) in contiguous blocks of at least
// `min_block` on the shared pool (one block when n is small). The split
// depends on the pool's size, so fn must give the same bits however [0, n)
// is cut (each output owned by one index, say).
template <typename Fn>
void ParallelRanges(int64_t n, int64_t min_block, Fn&& fn) {
  base::ThreadPool& pool = base::ThreadPool::Shared();
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(pool.size(), n / min_block));
  if (blocks == 1) {
    fn(int64_t{0}, n);
    return;
  }
  pool.ParallelFor(blocks, static_cast<int>(blocks), [&](size_t b) {
    const int64_t begin = n * static_cast<int64_t>(b) / blocks;
    const int64_t end = n * static_cast<int64_t>(b + 1) / blocks;
    fn(begin, end);
  });
}

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_CPU_PARALLEL_H_
