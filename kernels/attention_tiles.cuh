// Helpers shared by the flash attention kernels (flash_attention.cu,
// flash_attention_bf16.cu): on the device, the causal / sliding-window
// visibility rule of attention_shape.h, the key tiles a range of query
// positions sees, and the cp.async group fences; on the host, the shape
// fields of their parameter blocks and the launch with opted-in shared memory.

#ifndef MAXIMUS_KERNELS_ATTENTION_TILES_CUH_
#define MAXIMUS_KERNELS_ATTENTION_TILES_CUH_

#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention_shape.h"
#include "kernels/cuda_status.h"

namespace maximus::kernels::attention_tiles {

// Whether the query at `position` sees key `key`.
__device__ __forceinline__ bool Visible(int64_t position, int64_t key, int64_t window) {
  return key <= position && (window == 0 || position - key < window);
}

// The first and last key tiles (inclusive) that query positions
// [first_position, last_position] see.
__device__ __forceinline__ void KeyTileRange(int64_t first_position, int64_t last_position,
                                             int64_t window, int tile, int64_t* begin,
                                             int64_t* end) {
  const int64_t first_key =
      window > 0 && first_position + 1 > window ? first_position + 1 - window : 0;
  *begin = first_key / tile;
  *end = last_position / tile;
}

__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until at most `kPending` of this thread's committed groups are in flight.
template <int kPending>
__device__ __forceinline__ void CpAsyncWait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending));
}

inline bool Aligned16(const void* x) { return reinterpret_cast<uintptr_t>(x) % 16 == 0; }

// The shape fields every kernel's parameter block has, from `shape`.
template <typename Params>
Params ParamsOf(const AttentionShape& shape) {
  Params p{};
  p.batch = shape.batch;
  p.queries = shape.queries;
  p.query_offset = shape.query_offset;
  p.key_stride = shape.KeyStride();
  p.keys = shape.keys();
  p.heads = static_cast<int>(shape.heads);
  p.kv_heads = static_cast<int>(shape.kv_heads);
  p.head_dim = static_cast<int>(shape.head_dim);
  p.window = shape.window;
  p.scale = shape.scale;
  return p;
}

// Launches `blocks` blocks of `threads` with `smem` bytes of dynamic shared
// memory (opted into first); nothing for 0 blocks.
template <typename Kernel, typename Params>
absl::Status LaunchTiles(Kernel kernel, int64_t blocks, int threads, size_t smem,
                         cudaStream_t stream, const Params& params, const char* what) {
  if (blocks > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", blocks, " blocks is too many"));
  }
  if (blocks == 0) return absl::OkStatus();
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  kernel<<<static_cast<unsigned>(blocks), threads, smem, stream>>>(params);
  return CudaStatus(cudaGetLastError(), what);
}

}  // namespace maximus::kernels::attention_tiles

#endif  // MAXIMUS_KERNELS_ATTENTION_TILES_CUH_
