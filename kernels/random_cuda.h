// Counter-based normal random numbers on the GPU: random.h's FillNormal
// values in fp32 (the GPU's float math agrees to about 1e-6 relative), or
// rounded to bf16.

#ifndef MAXIMUS_KERNELS_RANDOM_CUDA_H_
#define MAXIMUS_KERNELS_RANDOM_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/bf16.h"
#include "kernels/random.h"

namespace maximus::kernels {

// out[i] = stddev * NormalAt(seed, offset + i), on `stream`.
absl::Status FillNormalCuda(float* out, int64_t count, uint64_t seed, float stddev,
                            uint64_t offset = 0, cudaStream_t stream = nullptr);
absl::Status FillNormalCuda(Bf16Bits* out, int64_t count, uint64_t seed, float stddev,
                            uint64_t offset = 0, cudaStream_t stream = nullptr);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_RANDOM_CUDA_H_
