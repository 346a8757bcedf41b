#include <cuda_bf16.h>
#include <cuda_pipeline.h>
#include <mma.h>
#include <thrust/iterator/counting_iterator.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_select.cuh>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_status.h"
#include "kernels/gemm_cuda.h"
#include "kernels/maxis_cuda.h"
#include "kernels/reduce.cuh"

namespace maximus::kernels {
namespace {

namespace wmma = nvcuda::wmma;

constexpr int kScanThreads = 256;  // 8 warps.
constexpr int kTileRows = 128;     // Vocabulary rows per scan tile.
constexpr int kTileScouts = 32;    // Scouts per inner step.
constexpr int kScorePitch = kTileRows + 4;
constexpr int kScanLowDim = 64;  // d_low the scan is compiled for (the seed's and default).
constexpr int kSmallK = 8;       // Largest k of the register-resident scan.
constexpr int kScanBlocks = 132 * 8;
// Shared memory of the small-k scan: two W tiles and the scores (the scouts
// are staged in the scores' space).
constexpr int kSmallKScanShared =
    2 * kTileRows * (kScanLowDim + 8) * 2 + kTileScouts * kScorePitch * 4;
constexpr int kRowThreads = 256;
constexpr int kStats = 4;  // Per token: t, t_low, ||h||², ||h_low||².
constexpr int kCoefs = 6;  // Per token: dz_t, dz_t_low, dz_g, dz_g_low, loss, loss_low.
constexpr int kNormThreads = 256;
// The targets' dW sums: sorted tokens per chunk, and columns (threads) per block.
constexpr int kTargetChunk = 32;
constexpr int kTargetColumns = 128;
static_assert(kTargetColumns >= kTargetChunk, "a thread stages each token of a chunk");

__device__ __forceinline__ float Bf(const __nv_bfloat16 x) { return __bfloat162float(x); }

// (score, id) ordered by score descending, then id ascending. `Before(a, b)`:
// a comes before b.
__device__ __forceinline__ bool Before(float sa, int32_t ia, float sb, int32_t ib) {
  return sa > sb || (sa == sb && ia < ib);
}

// The best (score, id) of the warp among entries strictly after (ps, pi).
__device__ __forceinline__ void WarpBest(float& s, int32_t& id) {
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float os = __shfl_xor_sync(kFullWarp, s, offset);
    const int32_t oi = __shfl_xor_sync(kFullWarp, id, offset);
    if (oi >= 0 && (id < 0 || Before(os, oi, s, id))) {
      s = os;
      id = oi;
    }
  }
}

// Per block b: partials[b] = sum ||w_v||², partials[gridDim.x + b] = sum
// ||w_v[:low]||² over the block's rows; a warp per row.
__global__ void WeightNormsKernel(const __nv_bfloat16* __restrict__ w, int64_t vocab, int64_t d,
                                  int64_t low, double* __restrict__ partials) {
  __shared__ double scratch[32];
  const int lane = threadIdx.x % 32;
  const int64_t warp = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  const int64_t warps = int64_t{gridDim.x} * blockDim.x / 32;
  float full = 0.0f, part = 0.0f;
  for (int64_t v = warp; v < vocab; v += warps) {
    const __nv_bfloat16* row = w + v * d;
    float row_full = 0.0f, row_low = 0.0f;
    if (d % 8 == 0) {
      for (int64_t j = lane * 8; j < d; j += 32 * 8) {
        const uint4 packed = *reinterpret_cast<const uint4*>(row + j);
        const __nv_bfloat16* x = reinterpret_cast<const __nv_bfloat16*>(&packed);
        float sq = 0.0f;
#pragma unroll
        for (int e = 0; e < 8; ++e) sq += Bf(x[e]) * Bf(x[e]);
        row_full += sq;
        if (j < low) {
#pragma unroll
          for (int e = 0; e < 8; ++e) row_low += (j + e < low) ? Bf(x[e]) * Bf(x[e]) : 0.0f;
        }
      }
    } else {
      for (int64_t j = lane; j < d; j += 32) {
        const float x = Bf(row[j]);
        row_full += x * x;
        if (j < low) row_low += x * x;
      }
    }
    full += row_full;
    part += row_low;
  }
  const double block_full = BlockSum(static_cast<double>(full), scratch);
  const double block_low = BlockSum(static_cast<double>(part), scratch);
  if (threadIdx.x == 0) {
    partials[blockIdx.x] = block_full;
    partials[gridDim.x + blockIdx.x] = block_low;
  }
}

// sums = the blocks' partials of WeightNormsKernel, added in a fixed order
// (atomics would add them in the order the blocks finish).
__global__ void SumNormPartialsKernel(const double* __restrict__ partials, int64_t blocks,
                                      double* __restrict__ sums) {
  __shared__ double scratch[32];
  double full = 0.0, low = 0.0;
  for (int64_t b = threadIdx.x; b < blocks; b += blockDim.x) {
    full += partials[b];
    low += partials[blocks + b];
  }
  full = BlockSum(full, scratch);
  low = BlockSum(low, scratch);
  if (threadIdx.x == 0) {
    sums[0] = full;
    sums[1] = low;
  }
}

// Scout scan, step 2. Each block takes vocabulary tiles of kTileRows rows;
// for each, the scores of all scouts (kTileScouts at a time, tensor cores)
// land in shared memory, and each scout's best `tile_picks` of the tile are
// written out. LOW is d_low (a multiple of 16).
template <int LOW>
__global__ void __launch_bounds__(kScanThreads)
    ScoutScanPerTileKernel(const __nv_bfloat16* __restrict__ h, const __nv_bfloat16* __restrict__ w,
                           int64_t vocab, int64_t d, int64_t stride, int64_t scouts, int64_t tiles,
                           int tile_picks, float* __restrict__ tile_scores,
                           int32_t* __restrict__ tile_ids) {
  constexpr int kPitch = LOW + 8;  // bf16 elements; keeps WMMA rows 32-byte aligned.
  __shared__ __align__(32) __nv_bfloat16 w_tile[kTileRows * kPitch];
  __shared__ __align__(32) __nv_bfloat16 s_tile[kTileScouts * kPitch];
  __shared__ __align__(32) float scores[kTileScouts * kScorePitch];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t v0 = tile * kTileRows;
    __syncthreads();
    for (int e = threadIdx.x; e < kTileRows * LOW; e += blockDim.x) {
      const int r = e / LOW, c = e % LOW;
      w_tile[r * kPitch + c] = v0 + r < vocab ? w[(v0 + r) * d + c] : __float2bfloat16(0.0f);
    }
    for (int64_t s0 = 0; s0 < scouts; s0 += kTileScouts) {
      __syncthreads();  // The previous step's scores and scouts are consumed.
      for (int e = threadIdx.x; e < kTileScouts * LOW; e += blockDim.x) {
        const int r = e / LOW, c = e % LOW;
        s_tile[r * kPitch + c] =
            s0 + r < scouts ? h[(s0 + r) * stride * d + c] : __float2bfloat16(0.0f);
      }
      __syncthreads();
      // 2 x 8 output fragments of 16 x 16; each warp owns two of one row block.
      {
        const int row_block = warp / 4;
        wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a;
        wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
        wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
        wmma::fill_fragment(acc[0], 0.0f);
        wmma::fill_fragment(acc[1], 0.0f);
#pragma unroll
        for (int k = 0; k < LOW; k += 16) {
          wmma::load_matrix_sync(a, s_tile + row_block * 16 * kPitch + k, kPitch);
#pragma unroll
          for (int f = 0; f < 2; ++f) {
            const int col_block = (warp % 4) * 2 + f;
            wmma::load_matrix_sync(b, w_tile + col_block * 16 * kPitch + k, kPitch);
            wmma::mma_sync(acc[f], a, b, acc[f]);
          }
        }
#pragma unroll
        for (int f = 0; f < 2; ++f) {
          const int col_block = (warp % 4) * 2 + f;
          wmma::store_matrix_sync(scores + row_block * 16 * kScorePitch + col_block * 16, acc[f],
                                  kScorePitch, wmma::mem_row_major);
        }
      }
      __syncthreads();
      // Each warp selects the best tile_picks of 4 scout rows; a lane holds 4 scores.
      for (int r = warp; r < kTileScouts; r += kScanThreads / 32) {
        const int64_t scout = s0 + r;
        if (scout >= scouts) break;
        float mine[4];
        int32_t ids[4];
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int col = lane + 32 * e;
          ids[e] = v0 + col < vocab ? static_cast<int32_t>(v0 + col) : -1;
          mine[e] = scores[r * kScorePitch + col];
        }
        float prev_s = INFINITY;
        int32_t prev_id = -1;
        const int64_t out = (scout * tiles + tile) * tile_picks;
        for (int p = 0; p < tile_picks; ++p) {
          float best_s = -INFINITY;
          int32_t best_id = -1;
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const bool after = prev_id < 0 ? true : Before(prev_s, prev_id, mine[e], ids[e]);
            if (ids[e] >= 0 && after && (best_id < 0 || Before(mine[e], ids[e], best_s, best_id))) {
              best_s = mine[e];
              best_id = ids[e];
            }
          }
          WarpBest(best_s, best_id);
          if (lane == 0) {
            tile_scores[out + p] = best_s;
            tile_ids[out + p] = best_id;
          }
          prev_s = best_s;
          prev_id = best_id;
        }
      }
    }
  }
}

// Scout scan for small k (<= KMAX), step 2. A block owns kTileScouts scouts
// and a contiguous segment of vocabulary tiles; each warp keeps the running
// top-k of its 4 scouts in shared memory, and a tile's score enters only when
// it beats the current k-th (rare after the first tiles), so selection costs a
// compare and a vote per 4 scores. Writes each (scout, segment)'s top k.
template <int LOW, int KMAX>
__global__ void __launch_bounds__(kScanThreads)
    ScoutScanSmallKKernel(const __nv_bfloat16* __restrict__ h, const __nv_bfloat16* __restrict__ w,
                          int64_t vocab, int64_t d, int64_t stride, int64_t scouts, int64_t tiles,
                          int k, float* __restrict__ part_scores, int32_t* __restrict__ part_ids) {
  constexpr int kPitch = LOW + 8;
  constexpr int kRowsPerWarp = kTileScouts / (kScanThreads / 32);
  static_assert(kTileRows == 32 * 4, "a lane scans 4 consecutive scores of a row");
  // Dynamic shared memory: two W tiles (the next loads while this one is
  // used) and the scores; the scouts are staged in the scores' space first.
  extern __shared__ __align__(128) unsigned char shared[];
  __nv_bfloat16* const w_tiles = reinterpret_cast<__nv_bfloat16*>(shared);
  float* const scores = reinterpret_cast<float*>(shared + 2 * kTileRows * kPitch * 2);
  __nv_bfloat16* const s_tile = reinterpret_cast<__nv_bfloat16*>(scores);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t s0 = int64_t{blockIdx.x} * kTileScouts;
  const int64_t segment = blockIdx.y, segments = gridDim.y;
  const int64_t tile_begin = segment * tiles / segments;
  const int64_t tile_end = (segment + 1) * tiles / segments;
  const bool wide = d % 8 == 0;

  for (int e = threadIdx.x; e < kTileScouts * LOW; e += blockDim.x) {
    const int r = e / LOW, c = e % LOW;
    s_tile[r * kPitch + c] =
        s0 + r < scouts ? h[(s0 + r) * stride * d + c] : __float2bfloat16(0.0f);
  }
  __syncthreads();
  // The scouts' fragments stay in registers for the whole segment.
  const int row_block = warp / 4;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> a[LOW / 16];
#pragma unroll
  for (int kk = 0; kk < LOW / 16; ++kk) {
    wmma::load_matrix_sync(a[kk], s_tile + row_block * 16 * kPitch + kk * 16, kPitch);
  }
  // (The loop's first barrier orders these reads before the scores overwrite them.)

  // Each scout's running top-k, best first, in shared memory (a warp owns
  // its rows; lane 0 inserts, rarely), and its k-th best as the entry bar.
  __shared__ float top_s[kTileScouts][KMAX];
  __shared__ int32_t top_i[kTileScouts][KMAX];
  for (int e = threadIdx.x; e < kTileScouts * KMAX; e += blockDim.x) {
    top_s[e / KMAX][e % KMAX] = -INFINITY;
    top_i[e / KMAX][e % KMAX] = -1;
  }
  bool row_valid[kRowsPerWarp];
  const float* bar_s_ptr[kRowsPerWarp];
  const int32_t* bar_i_ptr[kRowsPerWarp];
#pragma unroll
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int r = warp + rr * (kScanThreads / 32);
    row_valid[rr] = s0 + r < scouts;
    bar_s_ptr[rr] = &top_s[r][k - 1];
    bar_i_ptr[rr] = &top_i[r][k - 1];
  }

  // Starts copying tile `tile` into buffer `buffer` (asynchronously where
  // rows are 16-byte aligned). Thread t copies 16 bytes of rows t/8 + 32j.
  constexpr int kChunksPerRow = LOW / 8;
  constexpr int kRowsPerPass = kScanThreads / kChunksPerRow;
  static_assert(kTileRows % kRowsPerPass == 0, "whole passes per tile");
  const int copy_row = threadIdx.x / kChunksPerRow;
  const int copy_col = (threadIdx.x % kChunksPerRow) * 8;
  auto load_tile = [&](int64_t tile, int buffer) {
    const int64_t v0 = tile * kTileRows;
    __nv_bfloat16* dst = w_tiles + buffer * kTileRows * kPitch + copy_row * kPitch + copy_col;
    if (wide) {
      const __nv_bfloat16* src = w + (v0 + copy_row) * d + copy_col;
      const int rows_left =
          static_cast<int>(vocab - v0 < kTileRows ? vocab - v0 : kTileRows) - copy_row;
#pragma unroll
      for (int pass = 0; pass < kTileRows / kRowsPerPass; ++pass) {
        if (pass * kRowsPerPass < rows_left) {
          __pipeline_memcpy_async(dst + pass * kRowsPerPass * kPitch,
                                  src + int64_t{pass} * kRowsPerPass * d, 16);
        } else {
          *reinterpret_cast<uint4*>(dst + pass * kRowsPerPass * kPitch) = make_uint4(0, 0, 0, 0);
        }
      }
    } else {
      __nv_bfloat16* tile_dst = w_tiles + buffer * kTileRows * kPitch;
      for (int e = threadIdx.x; e < kTileRows * LOW; e += kScanThreads) {
        const int r = e / LOW, c = e % LOW;
        tile_dst[r * kPitch + c] = v0 + r < vocab ? w[(v0 + r) * d + c] : __float2bfloat16(0.0f);
      }
    }
    __pipeline_commit();
  };
  if (tile_begin < tile_end) load_tile(tile_begin, 0);

  for (int64_t tile = tile_begin; tile < tile_end; ++tile) {
    const int64_t v0 = tile * kTileRows;
    const int buffer = static_cast<int>((tile - tile_begin) & 1);
    const __nv_bfloat16* w_tile = w_tiles + buffer * kTileRows * kPitch;
    __syncthreads();  // The previous tile's scores and buffer are consumed.
    if (tile + 1 < tile_end) {
      load_tile(tile + 1, buffer ^ 1);
      __pipeline_wait_prior(1);
    } else {
      __pipeline_wait_prior(0);
    }
    __syncthreads();
    {
      wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> b;
      wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc[2];
#pragma unroll
      for (int f = 0; f < 2; ++f) {
        wmma::fill_fragment(acc[f], 0.0f);
#pragma unroll
        for (int kk = 0; kk < LOW / 16; ++kk) {
          wmma::load_matrix_sync(b, w_tile + ((warp % 4) * 2 + f) * 16 * kPitch + kk * 16, kPitch);
          wmma::mma_sync(acc[f], a[kk], b, acc[f]);
        }
        wmma::store_matrix_sync(scores + row_block * 16 * kScorePitch + ((warp % 4) * 2 + f) * 16,
                                acc[f], kScorePitch, wmma::mem_row_major);
      }
    }
    __syncthreads();
    // Lane l holds scores [4l, 4l + 4) of each of the warp's rows; only when
    // some lane's best reaches the row's k-th best does the warp go on to
    // exact insertion.
    const int32_t id0 = static_cast<int32_t>(v0) + 4 * lane;
    const bool last_tile = v0 + kTileRows > vocab;  // Block-uniform.
#pragma unroll
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int r = warp + rr * (kScanThreads / 32);
      if (!row_valid[rr]) continue;  // Warp-uniform.
      float4 v = *reinterpret_cast<const float4*>(scores + r * kScorePitch + 4 * lane);
      if (last_tile) {  // Rows past V never enter.
        if (id0 >= vocab) v.x = -INFINITY;
        if (id0 + 1 >= vocab) v.y = -INFINITY;
        if (id0 + 2 >= vocab) v.z = -INFINITY;
        if (id0 + 3 >= vocab) v.w = -INFINITY;
      }
      const float best = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
      float bar_s = bar_s_ptr[rr][0];
      if (!__any_sync(kFullWarp, best != -INFINITY && best >= bar_s)) continue;
      int32_t bar_i = bar_i_ptr[rr][0];
      // Take the tile's best in order, k rounds at most, while they beat the
      // row's k-th best.
      const float mine[4] = {v.x, v.y, v.z, v.w};
      float prev_s = INFINITY;
      int32_t prev_i = -1;
      for (int round = 0; round < k; ++round) {
        float bs = -INFINITY;
        int32_t bi = -1;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          const int32_t id = id0 + e;
          if (mine[e] != -INFINITY && (prev_i < 0 || Before(prev_s, prev_i, mine[e], id)) &&
              (bi < 0 || Before(mine[e], id, bs, bi))) {
            bs = mine[e];
            bi = id;
          }
        }
        WarpBest(bs, bi);
        if (bi < 0 || !(bar_i < 0 || Before(bs, bi, bar_s, bar_i))) break;
        if (lane == 0) {
          int j = k - 1;
          for (; j > 0 && Before(bs, bi, top_s[r][j - 1], top_i[r][j - 1]); --j) {
            top_s[r][j] = top_s[r][j - 1];
            top_i[r][j] = top_i[r][j - 1];
          }
          top_s[r][j] = bs;
          top_i[r][j] = bi;
        }
        __syncwarp();
        bar_s = bar_s_ptr[rr][0];
        bar_i = bar_i_ptr[rr][0];
        prev_s = bs;
        prev_i = bi;
      }
    }
  }
  __syncthreads();
  for (int e = threadIdx.x; e < kTileScouts * k; e += blockDim.x) {
    const int r = e / k, j = e % k;
    if (s0 + r >= scouts) continue;
    const int64_t out = ((s0 + r) * segments + segment) * k + j;
    part_scores[out] = top_s[r][j];
    part_ids[out] = top_i[r][j];
  }
}

// One block per scout: the best k of its tiles' picks, in order.
__global__ void MergeScoutPicksKernel(const float* __restrict__ tile_scores,
                                      const int32_t* __restrict__ tile_ids, int64_t entries, int k,
                                      int32_t* __restrict__ picks) {
  __shared__ float best_scores[32];
  __shared__ int32_t best_ids[32];
  const int64_t scout = blockIdx.x;
  const float* scores = tile_scores + scout * entries;
  const int32_t* ids = tile_ids + scout * entries;
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  float prev_s = INFINITY;
  int32_t prev_id = -1;
  for (int p = 0; p < k; ++p) {
    float best_s = -INFINITY;
    int32_t best_id = -1;
    for (int64_t e = threadIdx.x; e < entries; e += blockDim.x) {
      const int32_t id = ids[e];
      const float s = scores[e];
      if (id >= 0 && (prev_id < 0 || Before(prev_s, prev_id, s, id)) &&
          (best_id < 0 || Before(s, id, best_s, best_id))) {
        best_s = s;
        best_id = id;
      }
    }
    WarpBest(best_s, best_id);
    __syncthreads();
    if (lane == 0) {
      best_scores[warp] = best_s;
      best_ids[warp] = best_id;
    }
    __syncthreads();
    best_s = lane < blockDim.x / 32 ? best_scores[lane] : -INFINITY;
    best_id = lane < blockDim.x / 32 ? best_ids[lane] : -1;
    WarpBest(best_s, best_id);
    if (threadIdx.x == 0) picks[scout * k + p] = best_id;
    prev_s = best_s;
    prev_id = best_id;
  }
}

// Flags the picked rows as candidates and, for dW, as gradient rows too.
__global__ void FlagPicksKernel(const int32_t* __restrict__ picks, int64_t count,
                                uint8_t* __restrict__ candidate_flags,
                                uint8_t* __restrict__ row_flags) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int32_t id = picks[e];
    if (id >= 0) {
      candidate_flags[id] = 1;
      row_flags[id] = 1;
    }
  }
}

// Flags each unmasked target as a gradient row; records the first bad one.
__global__ void FlagTargetsKernel(const int32_t* __restrict__ targets,
                                  const uint8_t* __restrict__ mask, int64_t tokens, int64_t vocab,
                                  uint8_t* __restrict__ row_flags, int32_t* __restrict__ first_bad,
                                  float* __restrict__ mask_count) {
  __shared__ float scratch[32];
  float count = 0.0f;
  for (int64_t i = threadIdx.x; i < tokens; i += blockDim.x) {
    if (mask != nullptr && mask[i] == 0) continue;
    count += 1.0f;
    const int32_t y = targets[i];
    if (y < 0 || y >= vocab) {
      atomicMin(first_bad, static_cast<int32_t>(i));
    } else {
      row_flags[y] = 1;
    }
  }
  count = BlockSum(count, scratch);
  if (threadIdx.x == 0) mask_count[0] = fmaxf(count, 1.0f);
}

__global__ void IndexRowsKernel(const int32_t* __restrict__ ids, const int32_t* __restrict__ count,
                                int32_t* __restrict__ row_of) {
  for (int64_t j = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; j < count[0];
       j += int64_t{gridDim.x} * blockDim.x) {
    row_of[ids[j]] = static_cast<int32_t>(j);
  }
}

// W_C = W[C], 8 bf16 (16 bytes) at a time where rows allow.
__global__ void GatherRowsKernel(const __nv_bfloat16* __restrict__ w,
                                 const int32_t* __restrict__ ids, int64_t rows, int64_t d,
                                 __nv_bfloat16* __restrict__ out) {
  const bool wide = d % 8 == 0;
  const int64_t per_row = wide ? d / 8 : d;
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < rows * per_row;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = e / per_row, c = e % per_row;
    if (wide) {
      reinterpret_cast<uint4*>(out + r * d)[c] = reinterpret_cast<const uint4*>(w + ids[r] * d)[c];
    } else {
      out[r * d + c] = w[ids[r] * d + c];
    }
  }
}

// A warp per token: target logits (full and low) and squared norms of h.
__global__ void RowStatsKernel(const __nv_bfloat16* __restrict__ h,
                               const __nv_bfloat16* __restrict__ w,
                               const int32_t* __restrict__ targets,
                               const uint8_t* __restrict__ mask, int64_t tokens, int64_t vocab,
                               int64_t d, int64_t low, float* __restrict__ stats) {
  const int lane = threadIdx.x % 32;
  const int64_t i = (blockIdx.x * int64_t{blockDim.x} + threadIdx.x) / 32;
  if (i >= tokens) return;
  const int32_t y = targets[i];
  const bool on = (mask == nullptr || mask[i] != 0) && y >= 0 && y < vocab;
  const __nv_bfloat16* hi = h + i * d;
  const __nv_bfloat16* wy = w + (on ? int64_t{y} : 0) * d;
  float t = 0.0f, t_low = 0.0f, hh = 0.0f, hh_low = 0.0f;
  for (int64_t j = lane; j < d; j += 32) {
    const float x = Bf(hi[j]);
    const float prod = on ? x * Bf(wy[j]) : 0.0f;
    t += prod;
    hh += x * x;
    if (j < low) {
      t_low += prod;
      hh_low += x * x;
    }
  }
  t = WarpSum(t);
  t_low = WarpSum(t_low);
  hh = WarpSum(hh);
  hh_low = WarpSum(hh_low);
  if (lane == 0) {
    float* s = stats + i * kStats;
    s[0] = t;
    s[1] = t_low;
    s[2] = hh;
    s[3] = hh_low;
  }
}

// Rows of the N x |C| logit buffers start 16-byte aligned (|C| rounded up to
// 8), which cuBLAS's tensor-core kernels need.
int64_t PaddedCandidates(int64_t count) { return (count + 7) / 8 * 8; }

struct SoftmaxParams {
  int64_t tokens, vocab, d, low, candidates;
  int64_t pitch;   // Row stride of the logit buffers, PaddedCandidates(candidates).
  float log_rest;  // ln(V - |C| - 1)
  float aux_weight;
  bool use_ghost;
  bool write_grads;
};

// One block per token: the main and auxiliary sampled softmaxes (target slot,
// candidate slots, ghost slot), their losses, and their logit gradients
// scaled by m_i / M (the auxiliary ones also by alpha).
__global__ void __launch_bounds__(kRowThreads)
    SoftmaxKernel(SoftmaxParams p, const float* __restrict__ logits,
                  const float* __restrict__ logits_low, const int32_t* __restrict__ candidates,
                  const int32_t* __restrict__ targets, const uint8_t* __restrict__ mask,
                  const float* __restrict__ stats, const double* __restrict__ norm_sums,
                  const float* __restrict__ mask_count, __nv_bfloat16* __restrict__ grad,
                  __nv_bfloat16* __restrict__ grad_low, float* __restrict__ coefs) {
  __shared__ MaxSum scratch[32];
  const int64_t i = blockIdx.x;
  const int64_t c_count = p.candidates, pitch = p.pitch;
  const int32_t y = targets[i];
  const bool on = (mask == nullptr || mask[i] != 0) && y >= 0 && y < p.vocab;
  float* coef = coefs + i * kCoefs;
  if (!on) {
    if (p.write_grads) {
      for (int64_t c = threadIdx.x; c < pitch; c += blockDim.x) {
        grad[i * pitch + c] = __float2bfloat16(0.0f);
        grad_low[i * pitch + c] = __float2bfloat16(0.0f);
      }
    }
    if (threadIdx.x < kCoefs) coef[threadIdx.x] = 0.0f;
    return;
  }
  const float* s = stats + i * kStats;
  const double mean_norm = norm_sums[0] / p.vocab, mean_norm_low = norm_sums[1] / p.vocab;
  const float scale = 1.0f / mask_count[0];
  // Two passes per softmax: the normaliser, then the gradients.
  for (int part = 0; part < 2; ++part) {
    const float* z = (part == 0 ? logits : logits_low) + i * pitch;
    const float target = s[part == 0 ? 0 : 1];
    const float ghost =
        p.use_ghost ? p.log_rest + static_cast<float>(s[part == 0 ? 2 : 3] *
                                                      (part == 0 ? mean_norm : mean_norm_low) /
                                                      (2.0 * (part == 0 ? p.d : p.low)))
                    : -INFINITY;
    MaxSum acc = EmptyMaxSum();
    for (int64_t c = threadIdx.x; c < c_count; c += blockDim.x) {
      if (candidates[c] != y) acc = MergeMaxSum(acc, {z[c], 1.0f});
    }
    if (threadIdx.x == 0) {
      acc = MergeMaxSum(acc, {target, 1.0f});
      if (p.use_ghost) acc = MergeMaxSum(acc, {ghost, 1.0f});
    }
    acc = BlockMergeMaxSum(acc, scratch);
    const float lse = acc.max + __logf(acc.sum);
    const float weight = scale * (part == 0 ? 1.0f : p.aux_weight);
    if (p.write_grads) {
      __nv_bfloat16* g = (part == 0 ? grad : grad_low) + i * pitch;
      for (int64_t c = threadIdx.x; c < pitch; c += blockDim.x) {
        g[c] = __float2bfloat16(c < c_count && candidates[c] != y ? __expf(z[c] - lse) * weight
                                                                  : 0.0f);
      }
    }
    if (threadIdx.x == 0) {
      coef[part] = (__expf(target - lse) - 1.0f) * weight;                 // dz_t
      coef[2 + part] = p.use_ghost ? __expf(ghost - lse) * weight : 0.0f;  // dz_g
      coef[4 + part] = lse - target;                                       // token loss
    }
  }
}

// dH_i += dz_t w_y + dz_g h_i E/d, and the same on the first d_low dims with
// the auxiliary coefficients (the candidates' terms came from GEMMs).
__global__ void GradHiddenRowsKernel(SoftmaxParams p, const __nv_bfloat16* __restrict__ h,
                                     const __nv_bfloat16* __restrict__ w,
                                     const int32_t* __restrict__ targets,
                                     const float* __restrict__ coefs,
                                     const double* __restrict__ norm_sums,
                                     float* __restrict__ grad_hidden) {
  const int64_t i = blockIdx.x;
  const int32_t y = targets[i];
  const float* coef = coefs + i * kCoefs;
  if (coef[0] == 0.0f && coef[1] == 0.0f && coef[2] == 0.0f && coef[3] == 0.0f) return;
  const float ghost_full = coef[2] * static_cast<float>(norm_sums[0] / p.vocab / p.d);
  const float ghost_low = coef[3] * static_cast<float>(norm_sums[1] / p.vocab / p.low);
  const __nv_bfloat16* hi = h + i * p.d;
  const __nv_bfloat16* wy = w + int64_t{y} * p.d;
  float* out = grad_hidden + i * p.d;
  for (int64_t j = threadIdx.x; j < p.d; j += blockDim.x) {
    float g = coef[0] * Bf(wy[j]) + ghost_full * Bf(hi[j]);
    if (j < p.low) g += coef[1] * Bf(wy[j]) + ghost_low * Bf(hi[j]);
    out[j] += g;
  }
}

// Sparse dW rows: candidates' rows copied from the GEMM result.
__global__ void ScatterCandidateGradKernel(const float* __restrict__ candidate_grad,
                                           const int32_t* __restrict__ candidates, int64_t count,
                                           int64_t d, const int32_t* __restrict__ row_of,
                                           float* __restrict__ rows) {
  for (int64_t e = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; e < count * d;
       e += int64_t{gridDim.x} * blockDim.x) {
    const int64_t c = e / d, j = e % d;
    rows[int64_t{row_of[candidates[c]]} * d + j] = candidate_grad[e];
  }
}

// Sort keys for the targets' dW: an unmasked token's target, or `vocab` (sorted
// last, never summed) for the rest; the values are the token indices.
__global__ void TargetKeysKernel(const int32_t* __restrict__ targets,
                                 const uint8_t* __restrict__ mask, int64_t tokens, int64_t vocab,
                                 int32_t* __restrict__ keys, int32_t* __restrict__ token_ids) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < tokens;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int32_t y = targets[i];
    const bool on = (mask == nullptr || mask[i] != 0) && y >= 0 && y < vocab;
    keys[i] = on ? y : static_cast<int32_t>(vocab);
    token_ids[i] = static_cast<int32_t>(i);
  }
}

// Where SumTargetChunksKernel puts the sum of a piece (the tokens of one
// target within one chunk).
enum TargetFlush : int8_t {
  kNoFlush = 0,
  kFlushToRow,           // The whole run: added to its dW row.
  kFlushToContinuation,  // Continues a run begun in an earlier chunk: partials[chunk].
  kFlushToHead,          // Begins a run that goes on past the chunk: partials[chunks + chunk].
};

// Sparse dW rows, first half of the targets' terms dz_t h_i + dz_t_low
// h_i[:low]. Block (x, y): sorted tokens [32x, 32x + 32) (equal targets
// adjacent, in token order), columns [128y, 128y + 128). Each piece is summed
// in token order; a run within the chunk goes straight to its row, the ends
// of longer runs go to `partials` for AddTargetRunsKernel. Every row has one
// writer, and every sum a fixed order, so dW is the same bits on every run.
__global__ void __launch_bounds__(kTargetColumns)
    SumTargetChunksKernel(SoftmaxParams p, const __nv_bfloat16* __restrict__ h,
                          const int32_t* __restrict__ keys, const int32_t* __restrict__ token_ids,
                          const float* __restrict__ coefs, const int32_t* __restrict__ row_of,
                          float* __restrict__ partials, float* __restrict__ rows) {
  __shared__ int32_t s_token[kTargetChunk];
  __shared__ int32_t s_row[kTargetChunk];
  __shared__ float s_coef[kTargetChunk][2];
  __shared__ int8_t s_use[kTargetChunk];
  __shared__ int8_t s_flush[kTargetChunk];
  const int64_t n = p.tokens, chunk = blockIdx.x, chunks = gridDim.x;
  const int64_t p0 = chunk * kTargetChunk;
  const int count = static_cast<int>(min(n - p0, int64_t{kTargetChunk}));
  const int32_t first = keys[p0];
  if (first >= p.vocab) return;  // Masked tokens only (they sort last).
  if (threadIdx.x < kTargetChunk) {
    const int t = threadIdx.x;
    int32_t token = 0, row = 0;
    float c0 = 0.0f, c1 = 0.0f;
    bool use = false;
    TargetFlush flush = kNoFlush;
    if (t < count) {
      const int64_t q = p0 + t;
      const int32_t key = keys[q];
      const bool on = key < p.vocab;
      token = token_ids[q];
      c0 = coefs[int64_t{token} * kCoefs];
      c1 = coefs[int64_t{token} * kCoefs + 1];
      // Tokens whose coefficients are both zero add nothing.
      use = on && !(c0 == 0.0f && c1 == 0.0f);
      const bool next_same = q + 1 < n && keys[q + 1] == key;
      if (on && (t == count - 1 || !next_same)) {  // The last token of its piece.
        if (key == first && p0 > 0 && keys[p0 - 1] == key) {
          flush = kFlushToContinuation;
        } else if (next_same) {  // Only past the chunk's end.
          flush = kFlushToHead;
        } else {
          flush = kFlushToRow;
          row = row_of[key];
        }
      }
    }
    s_token[t] = token;
    s_row[t] = row;
    s_coef[t][0] = c0;
    s_coef[t][1] = c1;
    s_use[t] = use;
    s_flush[t] = flush;
  }
  __syncthreads();
  const int64_t j = blockIdx.y * int64_t{kTargetColumns} + threadIdx.x;
  if (j >= p.d) return;
  // All the chunk's values first, so that the loads overlap.
  float x[kTargetChunk];
#pragma unroll
  for (int t = 0; t < kTargetChunk; ++t) {
    x[t] = s_use[t] ? Bf(h[int64_t{s_token[t]} * p.d + j]) : 0.0f;
  }
  const bool in_low = j < p.low;
  float acc = 0.0f;
#pragma unroll
  for (int t = 0; t < kTargetChunk; ++t) {
    if (s_use[t]) acc += (s_coef[t][0] + (in_low ? s_coef[t][1] : 0.0f)) * x[t];
    switch (s_flush[t]) {
      case kFlushToRow:
        rows[int64_t{s_row[t]} * p.d + j] += acc;
        acc = 0.0f;
        break;
      case kFlushToContinuation:
        partials[chunk * p.d + j] = acc;
        acc = 0.0f;
        break;
      case kFlushToHead:
        partials[(chunks + chunk) * p.d + j] = acc;
        acc = 0.0f;
        break;
      default:
        break;
    }
  }
}

// Second half: each run longer than its first chunk is summed by the block of
// the chunk it begins in, its head partial then its continuations in chunk
// order, and added to its row.
__global__ void __launch_bounds__(kTargetColumns)
    AddTargetRunsKernel(SoftmaxParams p, const int32_t* __restrict__ keys,
                        const int32_t* __restrict__ row_of, const float* __restrict__ partials,
                        float* __restrict__ rows) {
  const int64_t n = p.tokens, chunk = blockIdx.x, chunks = gridDim.x;
  const int64_t p0 = chunk * kTargetChunk;
  const int64_t p1 = min(n, p0 + kTargetChunk);
  if (p1 >= n) return;
  const int32_t key = keys[p1 - 1];
  if (key >= p.vocab || keys[p1] != key) return;  // No run goes on past the chunk.
  if (p0 > 0 && keys[p0 - 1] == key) return;      // The run began earlier.
  // The run's last sorted position (keys are sorted).
  int64_t lo = p1, hi = n - 1;
  while (lo < hi) {
    const int64_t mid = (lo + hi + 1) / 2;
    if (keys[mid] == key) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  const int64_t last_chunk = lo / kTargetChunk;
  const int64_t j = blockIdx.y * int64_t{kTargetColumns} + threadIdx.x;
  if (j >= p.d) return;
  float acc = partials[(chunks + chunk) * p.d + j];
  for (int64_t c = chunk + 1; c <= last_chunk; ++c) acc += partials[c * p.d + j];
  rows[int64_t{row_of[key]} * p.d + j] += acc;
}

// loss[0..2] = (main + alpha aux, main, aux) means over unmasked tokens.
__global__ void MaxisLossKernel(const float* __restrict__ coefs, int64_t tokens, float aux_weight,
                                const float* __restrict__ mask_count, float* __restrict__ loss) {
  __shared__ double scratch[32];
  double main_sum = 0.0, aux_sum = 0.0;
  for (int64_t i = threadIdx.x; i < tokens; i += blockDim.x) {
    main_sum += coefs[i * kCoefs + 4];
    aux_sum += coefs[i * kCoefs + 5];
  }
  main_sum = BlockSum(main_sum, scratch);
  aux_sum = BlockSum(aux_sum, scratch);
  if (threadIdx.x == 0) {
    const double m = mask_count[0];
    loss[0] = static_cast<float>((main_sum + aux_weight * aux_sum) / m);
    loss[1] = static_cast<float>(main_sum / m);
    loss[2] = static_cast<float>(aux_sum / m);
  }
}

int GridFor(int64_t work, int threads) {
  return static_cast<int>(std::clamp<int64_t>((work + threads - 1) / threads, 1, 65536));
}

// WeightNormsKernel's grid: a warp per row, up to 65536 blocks. Fixed by V, so
// the partials and their sum are too.
int NormBlocks(int64_t vocab) { return GridFor(vocab * 32, kNormThreads); }

// Bits of the targets' sort keys, which lie in [0, V].
int TargetKeyBits(int64_t vocab) {
  int bits = 1;
  while ((int64_t{1} << bits) <= vocab) ++bits;
  return bits;
}

int64_t TargetChunks(int64_t tokens) { return (tokens + kTargetChunk - 1) / kTargetChunk; }

}  // namespace

MaxisCuda::MaxisCuda(const LinearHeadShape& shape, const MaxisConfig& config, CublasHandle handle)
    : shape_(shape), config_(config), handle_(std::move(handle)) {
  scouts_ = (shape.tokens + config.scout_stride - 1) / config.scout_stride;
  picks_per_scout_ = std::max<int64_t>(1, config.candidate_budget / scouts_);
  vocab_tiles_ = (shape.vocab + kTileRows - 1) / kTileRows;
  if (picks_per_scout_ <= kSmallK) {
    // Enough (scout chunk, vocabulary segment) blocks to fill the GPU.
    const int64_t chunks = (scouts_ + kTileScouts - 1) / kTileScouts;
    scan_segments_ = std::clamp<int64_t>((kScanBlocks + chunks - 1) / chunks, 1, vocab_tiles_);
    picks_per_entry_group_ = picks_per_scout_;
    scan_entries_ = scan_segments_ * picks_per_scout_;
  } else {
    scan_segments_ = 0;
    picks_per_entry_group_ = std::min<int64_t>(picks_per_scout_, kTileRows);
    scan_entries_ = vocab_tiles_ * picks_per_entry_group_;
  }
}

absl::StatusOr<MaxisCuda> MaxisCuda::Create(const LinearHeadShape& shape,
                                            const MaxisConfig& config) {
  MAXIMUS_RETURN_IF_ERROR(ValidateLinearHeadShape(shape));
  MAXIMUS_RETURN_IF_ERROR(ValidateMaxisConfig(shape, config));
  if (config.low_dim != kScanLowDim) {
    return absl::UnimplementedError(absl::StrCat("MaxisConfig.low_dim = ", config.low_dim,
                                                 ": the CUDA scout scan is built for ",
                                                 kScanLowDim));
  }
  if (shape.vocab > INT32_MAX || shape.tokens > INT32_MAX) {
    return absl::InvalidArgumentError("vocab and tokens must fit in int32");
  }
  MAXIMUS_ASSIGN_OR_RETURN(CublasHandle handle, CublasHandle::Create());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(ScoutScanSmallKKernel<kScanLowDim, kSmallK>,
                                                    cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                    kSmallKScanShared));
  MaxisCuda m(shape, config, std::move(handle));
  absl::StatusOr<CudaStream> side = CudaStream::Create();
  absl::StatusOr<CudaEvent> start = CudaEvent::Create();
  absl::StatusOr<CudaEvent> done = CudaEvent::Create();
  for (const absl::Status& status : {side.status(), start.status(), done.status()}) {
    MAXIMUS_RETURN_IF_ERROR(status);
  }
  m.side_stream_ = *std::move(side);
  m.start_event_ = *std::move(start);
  m.side_done_ = *std::move(done);
  const int64_t n = shape.tokens, d = shape.hidden, v = shape.vocab;
  const int64_t cmax = m.max_candidates();
  const int64_t cmax_padded = PaddedCandidates(cmax);
  size_t select_bytes = 0;
  thrust::counting_iterator<int32_t> ids(0);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cub::DeviceSelect::Flagged(
      nullptr, select_bytes, ids, static_cast<const uint8_t*>(nullptr),
      static_cast<int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(v)));
  size_t sort_bytes = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr),
      static_cast<const int32_t*>(nullptr), static_cast<int32_t*>(nullptr), static_cast<int>(n), 0,
      TargetKeyBits(v)));

#define MAXIMUS_ALLOCATE(field, type, count) \
  MAXIMUS_ASSIGN_OR_RETURN(m.field, DeviceBuffer<type>::Allocate(count))
  MAXIMUS_ALLOCATE(norm_partials_, double, 2 * NormBlocks(v));
  MAXIMUS_ALLOCATE(norm_sums_, double, 2);
  MAXIMUS_ALLOCATE(tile_scores_, float, m.scouts_* m.scan_entries_);
  MAXIMUS_ALLOCATE(tile_ids_, int32_t, m.scouts_ * m.scan_entries_);
  MAXIMUS_ALLOCATE(scout_picks_, int32_t, cmax);
  MAXIMUS_ALLOCATE(candidate_flags_, uint8_t, v);
  MAXIMUS_ALLOCATE(row_flags_, uint8_t, v);
  MAXIMUS_ALLOCATE(candidates_, int32_t, cmax);
  MAXIMUS_ALLOCATE(grad_ids_, int32_t, m.max_grad_rows());
  MAXIMUS_ALLOCATE(row_of_, int32_t, v);
  MAXIMUS_ALLOCATE(counts_, int32_t, 3);
  MAXIMUS_ALLOCATE(select_temp_, uint8_t, select_bytes);
  MAXIMUS_ALLOCATE(candidate_weight_, Bf16Bits, cmax_padded * d);
  MAXIMUS_ALLOCATE(row_stats_, float, n* kStats);
  MAXIMUS_ALLOCATE(logits_, float, n* cmax_padded);
  MAXIMUS_ALLOCATE(logits_low_, float, n* cmax_padded);
  MAXIMUS_ALLOCATE(grad_logits_, Bf16Bits, n * cmax_padded);
  MAXIMUS_ALLOCATE(grad_logits_low_, Bf16Bits, n * cmax_padded);
  MAXIMUS_ALLOCATE(row_coefs_, float, n* kCoefs);
  MAXIMUS_ALLOCATE(candidate_grad_, float, cmax_padded* d);
  MAXIMUS_ALLOCATE(mask_count_, float, 1);
  MAXIMUS_ALLOCATE(target_keys_, int32_t, 2 * n);
  MAXIMUS_ALLOCATE(target_tokens_, int32_t, 2 * n);
  MAXIMUS_ALLOCATE(sort_temp_, uint8_t, sort_bytes);
  MAXIMUS_ALLOCATE(target_partials_, float, 2 * TargetChunks(n) * d);
#undef MAXIMUS_ALLOCATE
  return m;
}

int64_t MaxisCuda::workspace_bytes() const {
  return norm_partials_.bytes() + norm_sums_.bytes() + tile_scores_.bytes() + tile_ids_.bytes() +
         scout_picks_.bytes() + candidate_flags_.bytes() + row_flags_.bytes() +
         candidates_.bytes() + grad_ids_.bytes() + row_of_.bytes() + counts_.bytes() +
         select_temp_.bytes() + candidate_weight_.bytes() + row_stats_.bytes() + logits_.bytes() +
         logits_low_.bytes() + grad_logits_.bytes() + grad_logits_low_.bytes() +
         row_coefs_.bytes() + candidate_grad_.bytes() + mask_count_.bytes() + target_keys_.bytes() +
         target_tokens_.bytes() + sort_temp_.bytes() + target_partials_.bytes();
}

absl::StatusOr<MaxisCuda::Counts> MaxisCuda::Run(const LinearHeadDeviceInputs& in,
                                                 const MaxisDeviceOutputs& out,
                                                 cudaStream_t stream) {
  if (in.hidden == nullptr || in.weight == nullptr || in.targets == nullptr) {
    return absl::InvalidArgumentError("hidden, weight and targets must be non-null");
  }
  if (out.loss == nullptr) return absl::InvalidArgumentError("outputs.loss must be non-null");
  if ((out.grad_weight_ids == nullptr) != (out.grad_weight_rows == nullptr)) {
    return absl::InvalidArgumentError("give both grad_weight_ids and grad_weight_rows, or neither");
  }
  MAXIMUS_RETURN_IF_ERROR(handle_.SetStream(stream));
  const int64_t n = shape_.tokens, d = shape_.hidden, v = shape_.vocab;
  const int64_t low = config_.low_dim;
  const auto* h = reinterpret_cast<const __nv_bfloat16*>(in.hidden);
  const auto* w = reinterpret_cast<const __nv_bfloat16*>(in.weight);
  const bool want_dh = out.grad_hidden != nullptr;
  const bool want_dw = out.grad_weight_rows != nullptr;

  // 1. Mean squared row norms of W and, for dW, the tokens sorted by target,
  // on the side stream.
  cudaStream_t side = side_stream_.get();
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaEventRecord(start_event_.get(), stream));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(side, start_event_.get(), 0));
  const int norm_blocks = NormBlocks(v);
  WeightNormsKernel<<<norm_blocks, kNormThreads, 0, side>>>(w, v, d, low, norm_partials_.data());
  SumNormPartialsKernel<<<1, 1024, 0, side>>>(norm_partials_.data(), norm_blocks,
                                              norm_sums_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  int32_t* sorted_keys = target_keys_.data() + n;
  int32_t* sorted_tokens = target_tokens_.data() + n;
  if (want_dw) {
    // A stable sort: equal targets keep token order, so their dW sums do too.
    TargetKeysKernel<<<GridFor(n, 256), 256, 0, side>>>(in.targets, in.loss_mask, n, v,
                                                        target_keys_.data(), target_tokens_.data());
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    size_t sort_bytes = sort_temp_.size();
    MAXIMUS_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
        sort_temp_.data(), sort_bytes, target_keys_.data(), sorted_keys, target_tokens_.data(),
        sorted_tokens, static_cast<int>(n), 0, TargetKeyBits(v), side));
  }
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaEventRecord(side_done_.get(), side));
  // The input errors below first make `stream` wait for the side stream,
  // whose reads of the inputs may still be running.
  auto join_side = [&](absl::Status status) {
    cudaStreamWaitEvent(stream, side_done_.get(), 0);
    return status;
  };

  // 2. Scout scan with per-tile top-k, then a per-scout merge.
  if (scan_segments_ > 0) {
    const dim3 grid(static_cast<unsigned>((scouts_ + kTileScouts - 1) / kTileScouts),
                    static_cast<unsigned>(scan_segments_));
    ScoutScanSmallKKernel<kScanLowDim, kSmallK><<<grid, kScanThreads, kSmallKScanShared, stream>>>(
        h, w, v, d, config_.scout_stride, scouts_, vocab_tiles_, static_cast<int>(picks_per_scout_),
        tile_scores_.data(), tile_ids_.data());
  } else {
    const int blocks = static_cast<int>(std::min<int64_t>(vocab_tiles_, kScanBlocks));
    ScoutScanPerTileKernel<kScanLowDim><<<blocks, kScanThreads, 0, stream>>>(
        h, w, v, d, config_.scout_stride, scouts_, vocab_tiles_,
        static_cast<int>(picks_per_entry_group_), tile_scores_.data(), tile_ids_.data());
  }
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  MergeScoutPicksKernel<<<scouts_, 256, 0, stream>>>(
      tile_scores_.data(), tile_ids_.data(), scan_entries_, static_cast<int>(picks_per_scout_),
      scout_picks_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());

  // 3. Candidates and gradient rows, sorted and unique.
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(candidate_flags_.data(), 0, v, stream));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(row_flags_.data(), 0, v, stream));
  const int32_t no_bad = INT_MAX;
  MAXIMUS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(counts_.data() + 2, &no_bad, sizeof(no_bad), cudaMemcpyHostToDevice, stream));
  FlagPicksKernel<<<GridFor(max_candidates(), 256), 256, 0, stream>>>(
      scout_picks_.data(), max_candidates(), candidate_flags_.data(), row_flags_.data());
  FlagTargetsKernel<<<1, 1024, 0, stream>>>(in.targets, in.loss_mask, n, v, row_flags_.data(),
                                            counts_.data() + 2, mask_count_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  thrust::counting_iterator<int32_t> ids(0);
  size_t temp_bytes = select_temp_.size();
  MAXIMUS_CUDA_RETURN_IF_ERROR(
      cub::DeviceSelect::Flagged(select_temp_.data(), temp_bytes, ids, candidate_flags_.data(),
                                 candidates_.data(), counts_.data(), static_cast<int>(v), stream));
  temp_bytes = select_temp_.size();
  MAXIMUS_CUDA_RETURN_IF_ERROR(cub::DeviceSelect::Flagged(
      select_temp_.data(), temp_bytes, ids, row_flags_.data(), grad_ids_.data(), counts_.data() + 1,
      static_cast<int>(v), stream));
  IndexRowsKernel<<<GridFor(max_grad_rows(), 256), 256, 0, stream>>>(
      grad_ids_.data(), counts_.data() + 1, row_of_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  int32_t counts[3];
  MAXIMUS_CUDA_RETURN_IF_ERROR(
      cudaMemcpyAsync(counts, counts_.data(), sizeof(counts), cudaMemcpyDeviceToHost, stream));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (counts[2] != INT_MAX) {
    return join_side(absl::InvalidArgumentError(
        absl::StrCat("targets[", counts[2], "] is outside [0, ", v, ")")));
  }
  const int64_t c_count = counts[0];
  const int64_t pitch = PaddedCandidates(c_count);
  Counts result{c_count, counts[1]};
  if (config_.use_ghost && v - c_count - 1 < 1) {
    return join_side(absl::InvalidArgumentError(
        absl::StrCat("the ghost logit needs V - |C| - 1 >= 1; V = ", v, ", |C| = ", c_count)));
  }

  // 4. Candidate logits and the two softmaxes.
  // W_C gets zero rows up to the padded count, so the GEMMs run on aligned
  // sizes and the padding's logits and gradients are exactly zero.
  GatherRowsKernel<<<GridFor(c_count * d / 8, 256), 256, 0, stream>>>(
      w, candidates_.data(), c_count, d,
      reinterpret_cast<__nv_bfloat16*>(candidate_weight_.data()));
  if (pitch > c_count) {
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemsetAsync(candidate_weight_.data() + c_count * d, 0,
                                                 sizeof(Bf16Bits) * (pitch - c_count) * d, stream));
  }
  RowStatsKernel<<<GridFor(n * 32, 256), 256, 0, stream>>>(h, w, in.targets, in.loss_mask, n, v, d,
                                                           low, row_stats_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  GemmDims logit_dims{n, pitch, d, false, true};
  logit_dims.ldc = pitch;
  MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), logit_dims, DType::kBFloat16, DType::kFloat32,
                                   1.0f, in.hidden, candidate_weight_.data(), 0.0f,
                                   logits_.data()));
  GemmDims low_dims{n, pitch, low, false, true};
  low_dims.lda = d;
  low_dims.ldb = d;
  low_dims.ldc = pitch;
  MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), low_dims, DType::kBFloat16, DType::kFloat32, 1.0f,
                                   in.hidden, candidate_weight_.data(), 0.0f, logits_low_.data()));
  SoftmaxParams params{
      n,
      v,
      d,
      low,
      c_count,
      pitch,
      config_.use_ghost ? static_cast<float>(std::log(double(v - c_count - 1))) : 0.0f,
      config_.aux_weight,
      config_.use_ghost,
      want_dh || want_dw};
  auto* grad = reinterpret_cast<__nv_bfloat16*>(grad_logits_.data());
  auto* grad_low = reinterpret_cast<__nv_bfloat16*>(grad_logits_low_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, side_done_.get(), 0));
  SoftmaxKernel<<<n, kRowThreads, 0, stream>>>(
      params, logits_.data(), logits_low_.data(), candidates_.data(), in.targets, in.loss_mask,
      row_stats_.data(), norm_sums_.data(), mask_count_.data(), grad, grad_low, row_coefs_.data());
  MaxisLossKernel<<<1, 1024, 0, stream>>>(row_coefs_.data(), n, config_.aux_weight,
                                          mask_count_.data(), out.loss);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());

  // 5. Backward.
  if (want_dh) {
    // dH = dZ · W_C, then dH[:, :low] += dZ_low · W_C[:, :low].
    GemmDims full_dims{n, d, pitch};
    MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), full_dims, DType::kBFloat16, DType::kFloat32,
                                     1.0f, grad, candidate_weight_.data(), 0.0f, out.grad_hidden));
    GemmDims dims{n, low, pitch};
    dims.ldb = d;
    dims.ldc = d;
    MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), dims, DType::kBFloat16, DType::kFloat32, 1.0f,
                                     grad_low, candidate_weight_.data(), 1.0f, out.grad_hidden));
    GradHiddenRowsKernel<<<n, 256, 0, stream>>>(params, h, w, in.targets, row_coefs_.data(),
                                                norm_sums_.data(), out.grad_hidden);
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  if (want_dw) {
    // dW_C = dZᵀ · H, then dW_C[:, :low] += dZ_lowᵀ · H[:, :low].
    GemmDims full_dims{pitch, d, n, true, false};
    MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), full_dims, DType::kBFloat16, DType::kFloat32,
                                     1.0f, grad, in.hidden, 0.0f, candidate_grad_.data()));
    GemmDims dims{pitch, low, n, true, false};
    dims.ldb = d;
    dims.ldc = d;
    MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), dims, DType::kBFloat16, DType::kFloat32, 1.0f,
                                     grad_low, in.hidden, 1.0f, candidate_grad_.data()));
    MAXIMUS_CUDA_RETURN_IF_ERROR(
        cudaMemsetAsync(out.grad_weight_rows, 0, sizeof(float) * result.grad_rows * d, stream));
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(out.grad_weight_ids, grad_ids_.data(),
                                                 sizeof(int32_t) * result.grad_rows,
                                                 cudaMemcpyDeviceToDevice, stream));
    ScatterCandidateGradKernel<<<GridFor(c_count * d, 256), 256, 0, stream>>>(
        candidate_grad_.data(), candidates_.data(), c_count, d, row_of_.data(),
        out.grad_weight_rows);
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    const dim3 grid(static_cast<unsigned>(TargetChunks(n)),
                    static_cast<unsigned>((d + kTargetColumns - 1) / kTargetColumns));
    SumTargetChunksKernel<<<grid, kTargetColumns, 0, stream>>>(
        params, h, sorted_keys, sorted_tokens, row_coefs_.data(), row_of_.data(),
        target_partials_.data(), out.grad_weight_rows);
    AddTargetRunsKernel<<<grid, kTargetColumns, 0, stream>>>(
        params, sorted_keys, row_of_.data(), target_partials_.data(), out.grad_weight_rows);
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  }
  return result;
}

}  // namespace maximus::kernels
