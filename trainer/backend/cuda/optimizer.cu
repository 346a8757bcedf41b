// The fused optimizer pass: gradient scaling and the float64 global norm in
// fixed blocks (the same sum on every run), then clipping and AdamW in one
// sweep over the arena.

#include "trainer/backend/cuda/launch.cuh"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer::cuda {
namespace {

constexpr int64_t kNormBlockElements = 1 << 16;
constexpr int kNormThreads = 256;

// A fixed-shape tree sum over the block's threads.
__device__ double BlockSum(double value, double* shared) {
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  return shared[0];
}

__global__ void ScaleAndSumSquaresKernel(float* __restrict__ grads, int64_t n, float grad_scale,
                                         double* __restrict__ partials) {
  __shared__ double shared[kNormThreads];
  const int64_t begin = blockIdx.x * kNormBlockElements;
  const int64_t end = min(n, begin + kNormBlockElements);
  double sum = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
    float g = grads[i];
    if (grad_scale != 1.0f) grads[i] = g = g * grad_scale;
    sum += static_cast<double>(g) * g;
  }
  const double total = BlockSum(sum, shared);
  if (threadIdx.x == 0) partials[blockIdx.x] = total;
}

__global__ void SumPartialsKernel(const double* __restrict__ partials, int64_t count,
                                  double* __restrict__ out) {
  __shared__ double shared[kNormThreads];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partials[i];
  const double total = BlockSum(sum, shared);
  if (threadIdx.x == 0) *out = total;
}

__global__ void AdamWKernel(const AdamWScalars s, float clip, int64_t n,
                            const int64_t* __restrict__ run_starts,
                            const uint8_t* __restrict__ run_decays, int64_t runs,
                            float* __restrict__ params, float* __restrict__ grads,
                            float* __restrict__ m, float* __restrict__ v) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n) {
    // The run holding i: the last start <= i.
    int64_t lo = 0, hi = runs - 1;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (run_starts[mid] <= i) {
        lo = mid;
      } else {
        hi = mid - 1;
      }
    }
    float g = grads[i];
    if (clip != 1.0f) grads[i] = g = g * clip;
    const float m_i = s.beta1 * m[i] + s.one_minus_beta1 * g;
    const float v_i = s.beta2 * v[i] + s.one_minus_beta2 * g * g;
    const float denom = sqrtf(v_i) / s.bias_correction2_sqrt + s.eps;
    m[i] = m_i;
    v[i] = v_i;
    const float decay = run_decays[lo] ? s.decay : 1.0f;
    params[i] = params[i] * decay - s.step_size * (m_i / denom);
  }
}

}  // namespace

int64_t GradientNormBlocks(int64_t n) { return (n + kNormBlockElements - 1) / kNormBlockElements; }

absl::Status ScaleAndSumSquaresCuda(float* grads, int64_t n, float grad_scale, double* partials,
                                    double* sum_of_squares, cudaStream_t stream) {
  const int64_t blocks = GradientNormBlocks(n);
  if (blocks > 0) {
    ScaleAndSumSquaresKernel<<<static_cast<unsigned>(blocks), kNormThreads, 0, stream>>>(
        grads, n, grad_scale, partials);
    if (auto status = LaunchStatus("ScaleAndSumSquaresKernel"); !status.ok()) return status;
  }
  SumPartialsKernel<<<1, kNormThreads, 0, stream>>>(partials, blocks, sum_of_squares);
  return LaunchStatus("SumPartialsKernel");
}

absl::Status AdamWCuda(const AdamWScalars& scalars, float clip, int64_t n, const int64_t* run_starts,
                       const uint8_t* run_decays, int64_t runs, float* params, float* grads,
                       float* m, float* v, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  AdamWKernel<<<GridFor(n), kThreads, 0, stream>>>(scalars, clip, n, run_starts, run_decays, runs,
                                                   params, grads, m, v);
  return LaunchStatus("AdamWKernel");
}

}  // namespace maximus::trainer::cuda
