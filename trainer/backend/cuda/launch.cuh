// Launch helpers shared by the CUDA backend's kernels.

#ifndef MAXIMUS_TRAINER_BACKEND_CUDA_LAUNCH_CUH_
#define MAXIMUS_TRAINER_BACKEND_CUDA_LAUNCH_CUH_

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"

namespace maximus::trainer::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n elements: bounded, so one launch
// covers any n.
inline int GridFor(int64_t n) {
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads,
                                                                  int64_t{132} * 16)));
}

// The status of the launch just made.
inline absl::Status LaunchStatus(const char* kernel) {
  return kernels::CudaStatus(cudaGetLastError(), absl::StrCat(kernel, " launch"));
}

#define MAXIMUS_GRID_STRIDE_LOOP(i, n)                                           \
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < (n); \
       i += int64_t{gridDim.x} * blockDim.x)

}  // namespace maximus::trainer::cuda

#endif  // MAXIMUS_TRAINER_BACKEND_CUDA_LAUNCH_CUH_
