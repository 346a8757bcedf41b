// Element type conversion between fp32 and bf16 on the device. The CPU
// reference is FloatToBf16 / Bf16ToFloat in bf16.h; the CUDA version (cast.cu)
// must agree with it bit for bit.

#ifndef MAXIMUS_KERNELS_CAST_CUDA_H_
#define MAXIMUS_KERNELS_CAST_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/bf16.h"

namespace maximus::kernels {

// out[i] = bf16(in[i]) (round to nearest even), for i < count.
absl::Status CastFloatToBf16Cuda(const float* in, Bf16Bits* out, int64_t count,
                                 cudaStream_t stream = nullptr);

// out[i] = float(in[i]) (exact), for i < count.
absl::Status CastBf16ToFloatCuda(const Bf16Bits* in, float* out, int64_t count,
                                 cudaStream_t stream = nullptr);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_CAST_CUDA_H_
