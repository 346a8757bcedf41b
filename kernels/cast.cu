#include <cuda_bf16.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cast_cuda.h"
#include "kernels/cuda_status.h"

namespace maximus::kernels {
namespace {

constexpr int kThreads = 256;

// A grid-stride loop: one launch of bounded size covers any count.
__global__ void FloatToBf16Kernel(const float* __restrict__ in, __nv_bfloat16* __restrict__ out,
                                  int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __float2bfloat16_rn(in[i]);
  }
}

// Four elements a thread-step (a 16-byte load, an 8-byte store): the pass is
// memory-bound and wide accesses keep it near the bandwidth floor. Needs `in`
// 16-byte and `out` 8-byte aligned; the count % 4 tail goes scalar.
__global__ void FloatToBf16Kernel4(const float4* __restrict__ in, uint2* __restrict__ out,
                                   int64_t groups) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < groups;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float4 x = in[i];
    const __nv_bfloat162 lo = __floats2bfloat162_rn(x.x, x.y), hi = __floats2bfloat162_rn(x.z, x.w);
    out[i] = make_uint2(*reinterpret_cast<const unsigned*>(&lo),
                        *reinterpret_cast<const unsigned*>(&hi));
  }
}

__global__ void Bf16ToFloatKernel(const __nv_bfloat16* __restrict__ in, float* __restrict__ out,
                                  int64_t count) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = __bfloat162float(in[i]);
  }
}

int GridFor(int64_t count) {
  return static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, 65536));
}

absl::Status CheckArgs(const void* in, const void* out, int64_t count) {
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("count must be >= 0, got ", count));
  if (count > 0 && (in == nullptr || out == nullptr)) {
    return absl::InvalidArgumentError("in and out must be non-null");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status CastFloatToBf16Cuda(const float* in, Bf16Bits* out, int64_t count,
                                 cudaStream_t stream) {
  MAXIMUS_RETURN_IF_ERROR(CheckArgs(in, out, count));
  if (count == 0) return absl::OkStatus();
  const bool aligned =
      reinterpret_cast<uintptr_t>(in) % 16 == 0 && reinterpret_cast<uintptr_t>(out) % 8 == 0;
  if (aligned && count >= 4) {
    const int64_t groups = count / 4;
    FloatToBf16Kernel4<<<GridFor(groups), kThreads, 0, stream>>>(
        reinterpret_cast<const float4*>(in), reinterpret_cast<uint2*>(out), groups);
    MAXIMUS_RETURN_IF_ERROR(CudaStatus(cudaGetLastError(), "CastFloatToBf16Cuda"));
    in += 4 * groups;
    out += 4 * groups;
    count -= 4 * groups;
    if (count == 0) return absl::OkStatus();
  }
  FloatToBf16Kernel<<<GridFor(count), kThreads, 0, stream>>>(
      in, reinterpret_cast<__nv_bfloat16*>(out), count);
  return CudaStatus(cudaGetLastError(), "FloatToBf16Kernel launch");
}

absl::Status CastBf16ToFloatCuda(const Bf16Bits* in, float* out, int64_t count,
                                 cudaStream_t stream) {
  MAXIMUS_RETURN_IF_ERROR(CheckArgs(in, out, count));
  if (count == 0) return absl::OkStatus();
  Bf16ToFloatKernel<<<GridFor(count), kThreads, 0, stream>>>(
      reinterpret_cast<const __nv_bfloat16*>(in), out, count);
  return CudaStatus(cudaGetLastError(), "Bf16ToFloatKernel launch");
}

}  // namespace maximus::kernels
