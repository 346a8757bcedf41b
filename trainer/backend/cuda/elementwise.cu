// Fill, add and the gated activation: memory-bound, one grid-stride loop each.

#include "trainer/backend/cuda/launch.cuh"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer::cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

// act(x) and act'(x) as kernels/gated_activation.cc defines them.
__device__ __forceinline__ float ActivationValue(bool silu, float x) {
  if (silu) return x / (1.0f + expf(-x));
  const float inner = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + tanhf(inner));
}

__device__ __forceinline__ float ActivationDerivative(bool silu, float x) {
  if (silu) {
    const float sig = 1.0f / (1.0f + expf(-x));
    return sig * (1.0f + x * (1.0f - sig));
  }
  const float inner = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float t = tanhf(inner);
  const float dinner = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dinner;
}

__global__ void FillKernel(float* __restrict__ x, int64_t n, float value) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n) x[i] = value;
}

__global__ void AddKernel(const float* a, const float* b, int64_t n, float* out) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n) out[i] = a[i] + b[i];
}

__global__ void GatedActivationKernel(bool silu, const float* __restrict__ gate,
                                      const float* __restrict__ up, int64_t n,
                                      float* __restrict__ out) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n) out[i] = ActivationValue(silu, gate[i]) * up[i];
}

__global__ void GatedActivationBackwardKernel(bool silu, const float* __restrict__ gate,
                                              const float* __restrict__ up,
                                              const float* __restrict__ dout, int64_t n,
                                              float* __restrict__ dgate, float* __restrict__ dup) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n) {
    const float g = gate[i];
    dup[i] = dout[i] * ActivationValue(silu, g);
    dgate[i] = dout[i] * up[i] * ActivationDerivative(silu, g);
  }
}

}  // namespace

absl::Status FillCuda(float* x, int64_t n, float value, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  if (value == 0.0f) {
    return kernels::CudaStatus(cudaMemsetAsync(x, 0, n * sizeof(float), stream), "cudaMemsetAsync");
  }
  FillKernel<<<GridFor(n), kThreads, 0, stream>>>(x, n, value);
  return LaunchStatus("FillKernel");
}

absl::Status AddCuda(const float* a, const float* b, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  AddKernel<<<GridFor(n), kThreads, 0, stream>>>(a, b, n, out);
  return LaunchStatus("AddKernel");
}

absl::Status GatedActivationCuda(kernels::Activation activation, const float* gate,
                                 const float* up, int64_t n, float* out, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  GatedActivationKernel<<<GridFor(n), kThreads, 0, stream>>>(
      activation == kernels::Activation::kSilu, gate, up, n, out);
  return LaunchStatus("GatedActivationKernel");
}

absl::Status GatedActivationBackwardCuda(kernels::Activation activation, const float* gate,
                                         const float* up, const float* dout, int64_t n,
                                         float* dgate, float* dup, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  GatedActivationBackwardKernel<<<GridFor(n), kThreads, 0, stream>>>(
      activation == kernels::Activation::kSilu, gate, up, dout, n, dgate, dup);
  return LaunchStatus("GatedActivationBackwardKernel");
}

}  // namespace maximus::trainer::cuda
