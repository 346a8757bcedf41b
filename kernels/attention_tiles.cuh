// Device helpers shared by the flash attention kernels (flash_attention.cu,
// flash_attention_bf16.cu): the causal / sliding-window visibility rule of
// attention_shape.h, the key tiles a range of query positions sees, and the
// cp.async group fences.

#ifndef MAXIMUS_KERNELS_ATTENTION_TILES_CUH_
#define MAXIMUS_KERNELS_ATTENTION_TILES_CUH_

#include <cstdint>

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

}  // namespace maximus::kernels::attention_tiles

#endif  // MAXIMUS_KERNELS_ATTENTION_TILES_CUH_
