#include <cuda_bf16.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/random_cuda.h"

namespace maximus::kernels {
namespace {

__device__ __forceinline__ float DeviceNormalAt(uint64_t seed, uint64_t i) {
  const uint64_t bits = SplitMix64((seed << 32) + i);
  const float u1 = (static_cast<float>(bits >> 32) + 1.0f) * 2.3283064365386963e-10f;
  const float u2 = (static_cast<float>(bits & 0xffffffffu) + 1.0f) * 2.3283064365386963e-10f;
  return sqrtf(-2.0f * logf(u1)) * cospif(2.0f * u2);
}

__device__ __forceinline__ void Store(float* out, float v) { *out = v; }
__device__ __forceinline__ void Store(Bf16Bits* out, float v) {
  const __nv_bfloat16 b = __float2bfloat16_rn(v);
  *out = *reinterpret_cast<const Bf16Bits*>(&b);
}

template <typename T>
__global__ void FillNormalKernel(T* __restrict__ out, int64_t count, uint64_t seed, float stddev,
                                 uint64_t offset) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    Store(out + i, stddev * DeviceNormalAt(seed, offset + static_cast<uint64_t>(i)));
  }
}

template <typename T>
absl::Status Launch(T* out, int64_t count, uint64_t seed, float stddev, uint64_t offset,
                    cudaStream_t stream) {
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("count must be >= 0, got ", count));
  if (count == 0) return absl::OkStatus();
  if (out == nullptr) return absl::InvalidArgumentError("out must be non-null");
  const int blocks = static_cast<int>(std::min<int64_t>((count + 255) / 256, 132 * 16));
  FillNormalKernel<<<blocks, 256, 0, stream>>>(out, count, seed, stddev, offset);
  return CudaStatus(cudaGetLastError(), "FillNormalKernel launch");
}

}  // namespace

absl::Status FillNormalCuda(float* out, int64_t count, uint64_t seed, float stddev, uint64_t offset,
                            cudaStream_t stream) {
  return Launch(out, count, seed, stddev, offset, stream);
}

absl::Status FillNormalCuda(Bf16Bits* out, int64_t count, uint64_t seed, float stddev,
                            uint64_t offset, cudaStream_t stream) {
  return Launch(out, count, seed, stddev, offset, stream);
}

}  // namespace maximus::kernels
