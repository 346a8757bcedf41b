// Warp and block reductions shared by the loss kernels, including the merge
// of online-softmax states (running max, sum of exp relative to it).

#ifndef MAXIMUS_KERNELS_REDUCE_CUH_
#define MAXIMUS_KERNELS_REDUCE_CUH_

#include <cuda_runtime.h>

#include <cmath>

namespace maximus::kernels {

constexpr unsigned kFullWarp = 0xffffffffu;

// A partial softmax normaliser: sum_j exp(x_j - max) over the values seen.
struct MaxSum {
  float max;
  float sum;
};

__device__ __forceinline__ MaxSum EmptyMaxSum() { return {-INFINITY, 0.0f}; }

__device__ __forceinline__ MaxSum MergeMaxSum(MaxSum a, MaxSum b) {
  const float m = fmaxf(a.max, b.max);
  if (m == -INFINITY) return EmptyMaxSum();
  return {m, a.sum * __expf(a.max - m) + b.sum * __expf(b.max - m)};
}

__device__ __forceinline__ MaxSum WarpMergeMaxSum(MaxSum v) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    MaxSum other{__shfl_xor_sync(kFullWarp, v.max, offset),
                 __shfl_xor_sync(kFullWarp, v.sum, offset)};
    v = MergeMaxSum(v, other);
  }
  return v;
}

// All threads of the block get the merged state. `scratch` holds 32 entries.
__device__ __forceinline__ MaxSum BlockMergeMaxSum(MaxSum v, MaxSum* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
  v = WarpMergeMaxSum(v);
  __syncthreads();  // scratch may still be read from a previous call.
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : EmptyMaxSum();
  return WarpMergeMaxSum(v);
}

__device__ __forceinline__ double WarpSum(double v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullWarp, v, offset);
  return v;
}

__device__ __forceinline__ float WarpSum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(kFullWarp, v, offset);
  return v;
}

// All threads of the block get the sum. `scratch` holds 32 entries.
template <typename T>
__device__ __forceinline__ T BlockSum(T v, T* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int warps = (blockDim.x + 31) / 32;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = lane < warps ? scratch[lane] : T(0);
  return WarpSum(v);
}

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_REDUCE_CUH_
