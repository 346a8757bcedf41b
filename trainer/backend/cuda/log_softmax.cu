// Exact log-probabilities of the targets from fp32 logits, for scoring: one
// block per row, fixed-shape reductions (the same bits on every run).

#include <cmath>

#include "trainer/backend/cuda/launch.cuh"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer::cuda {
namespace {

constexpr int kRowThreads = 256;

__global__ void TargetLogSoftmaxKernel(const float* __restrict__ logits, int64_t vocab,
                                       const int32_t* __restrict__ targets,
                                       float* __restrict__ out) {
  __shared__ double shared[kRowThreads];
  const float* z = logits + blockIdx.x * vocab;
  float max = -INFINITY;
  for (int64_t j = threadIdx.x; j < vocab; j += kRowThreads) max = fmaxf(max, z[j]);
  shared[threadIdx.x] = max;
  __syncthreads();
  for (int stride = kRowThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      shared[threadIdx.x] = fmax(shared[threadIdx.x], shared[threadIdx.x + stride]);
    }
    __syncthreads();
  }
  const float row_max = static_cast<float>(shared[0]);
  __syncthreads();
  double sum = 0.0;
  for (int64_t j = threadIdx.x; j < vocab; j += kRowThreads) sum += expf(z[j] - row_max);
  shared[threadIdx.x] = sum;
  __syncthreads();
  for (int stride = kRowThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    const int32_t target = targets[blockIdx.x];
    out[blockIdx.x] = target >= 0 && target < vocab
                          ? static_cast<float>(static_cast<double>(z[target]) - row_max -
                                               log(shared[0]))
                          : NAN;
  }
}

}  // namespace

absl::Status TargetLogSoftmaxCuda(const float* logits, int64_t rows, int64_t vocab,
                                  const int32_t* targets, float* out, cudaStream_t stream) {
  if (rows <= 0) return absl::OkStatus();
  TargetLogSoftmaxKernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream>>>(logits, vocab,
                                                                                  targets, out);
  return LaunchStatus("TargetLogSoftmaxKernel");
}

}  // namespace maximus::trainer::cuda
