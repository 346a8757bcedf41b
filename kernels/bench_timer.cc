#include "kernels/bench_timer.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <vector>

#include "base/status_macros.h"
#include "kernels/cuda_status.h"

namespace maximus::kernels {

absl::StatusOr<double> MedianMilliseconds(const std::function<absl::Status()>& work, int warmup,
                                          int iters) {
  if (iters < 1) return absl::InvalidArgumentError("iters must be at least 1");
  for (int i = 0; i < warmup; ++i) {
    MAXIMUS_RETURN_IF_ERROR(work());
  }
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
  cudaEvent_t start, stop;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  std::vector<float> times;
  absl::Status status;
  for (int i = 0; i < iters && status.ok(); ++i) {
    status = CudaStatus(cudaEventRecord(start), "cudaEventRecord");
    if (status.ok()) status = work();
    if (status.ok()) status = CudaStatus(cudaEventRecord(stop), "cudaEventRecord");
    if (status.ok()) status = CudaStatus(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float ms = 0;
    if (status.ok()) status = CudaStatus(cudaEventElapsedTime(&ms, start, stop), "elapsed");
    times.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  MAXIMUS_RETURN_IF_ERROR(status);
  std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
  return static_cast<double>(times[times.size() / 2]);
}

}  // namespace maximus::kernels
