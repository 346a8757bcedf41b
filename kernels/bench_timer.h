// Timing of device work for benchmark programs: CUDA events around each run,
// warm-up first, median of many runs.

#ifndef MAXIMUS_KERNELS_BENCH_TIMER_H_
#define MAXIMUS_KERNELS_BENCH_TIMER_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace maximus::kernels {

// Runs `work` (which enqueues device work on the default stream) `warmup`
// times untimed, then `iters` times each between two events; returns the
// median milliseconds. Fails with the first error `work` returns.
absl::StatusOr<double> MedianMilliseconds(const std::function<absl::Status()>& work, int warmup,
                                          int iters);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_BENCH_TIMER_H_
