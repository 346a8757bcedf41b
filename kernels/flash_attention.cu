#include <cooperative_groups.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/attention_tiles.cuh"
#include "kernels/cuda_status.h"
#include "kernels/flash_attention_cuda.h"

namespace maximus::kernels {
namespace {

using attention_tiles::Aligned16;
using attention_tiles::CpAsyncCommit;
using attention_tiles::CpAsyncWait;
using attention_tiles::KeyTileRange;
using attention_tiles::ParamsOf;
using attention_tiles::Visible;

// The kernels, all of 256 threads (kD: head_dim rounded up to 32, 64, 128 or
// 256; shared memory at kD 256):
//   fp32 (FlashAttentionMath::kFp32): ForwardKernel (64 queries × 32 keys a
//     step, 137 KB), DqKernel (32 × 32 at kD 256, else 64 × 32; 133 KB) and
//     DkDvKernel (32 keys × 32 queries, 137 KB); FMAs from shared memory.
//   TF32 tensor cores: ForwardTcKernel (64 × 32, 206 KB), DqTcKernel (32 × 32
//     at kD 256, else 64 × 32; 204 KB), DkDvTcKernel (32 × 32, 204 KB), with
//     tiles double-buffered by cp.async and, where tiles are fewer than SMs,
//     each tile split over a cluster of 2 or 4 blocks.
//   DeltaKernel (Σ dout·out per row, a warp per row) before either backward,
//   DecodeKernel for forwards of at most 4 queries.
// The fp32 kernels arrange their threads as a 16 × 16 grid: thread (ty, tx)
// owns tile rows ty, ty + 16, ... and columns tx, tx + 16, ...; the 16
// threads of a row group are 16 consecutive lanes of one warp, so row
// reductions are shuffles within a half-warp.
constexpr int kThreads = 256;
constexpr int kSide = 16;

// The shape, as the kernels read it.
struct Params {
  const float* q;
  const float* k;
  const float* v;
  const float* out;
  const float* lse;
  const float* dout;
  float* delta;
  float* out_w;
  float* lse_w;
  float* dq;
  float* dk;
  float* dv;
  int64_t batch, queries, query_offset, key_stride, keys;
  int heads, kv_heads, head_dim;
  bool vec4;  // head_dim % 4 == 0 and q, k, v, dout 16-byte aligned.
  int64_t window;
  float scale;
};

// Shared-memory rows of a head_dim-wide tile are kD + 1 floats apart, so the
// 16 different rows that a half-warp reads at one column fall in 16 banks.
template <int kD>
constexpr int RowStride() {
  return kD + 1;
}

// tile[r][c] = src[(row0 + r) * row_stride + c] for rows below `rows` and
// columns below head_dim; zero elsewhere (padding must not add to dot
// products).
template <int kD, int kRows>
__device__ __forceinline__ void LoadTile(float* tile, const float* __restrict__ src,
                                         int64_t row_stride, int64_t row0, int64_t rows,
                                         int head_dim) {
  for (int idx = threadIdx.x; idx < kRows * kD; idx += kThreads) {
    const int r = idx / kD, c = idx % kD;
    const int64_t row = row0 + r;
    tile[r * RowStride<kD>() + c] =
        row < rows && c < head_dim ? __ldg(src + row * row_stride + c) : 0.0f;
  }
}

// Sum and max over the 16 lanes of a row group (xor butterflies give every
// lane the same bits).
__device__ __forceinline__ float RowSum(float x) {
#pragma unroll
  for (int offset = kSide / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}
__device__ __forceinline__ float RowMax(float x) {
#pragma unroll
  for (int offset = kSide / 2; offset > 0; offset /= 2) {
    x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, offset));
  }
  return x;
}

// Forward: one block per (query tile, sequence, head). Q stays in shared
// memory; key/value tiles stream through it with the online softmax
// (running max m and sum l per row, O rescaled when m grows).
template <int kD, int kBq, int kBk>
__global__ void __launch_bounds__(kThreads) ForwardKernel(Params p) {
  constexpr int kS = RowStride<kD>();
  constexpr int kRows = kBq / kSide, kCols = kBk / kSide, kDims = kD / kSide;
  extern __shared__ float smem[];
  float* q_tile = smem;               // [kBq][kS]
  float* k_tile = q_tile + kBq * kS;  // [kBk][kS]
  float* v_tile = k_tile + kBk * kS;  // [kBk][kS]
  float* p_tile = v_tile + kBk * kS;  // [kBq][kBk + 1]

  const int64_t q_tiles = (p.queries + kBq - 1) / kBq;
  const int64_t heads_total = p.batch * p.heads;
  // The last query tiles see the most keys: start them first.
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads_total;
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads_total;
  const int64_t b = bh / p.heads;
  const int h = static_cast<int>(bh % p.heads);
  const int g = h / (p.heads / p.kv_heads);
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const float* q_base = p.q + b * p.queries * q_row + h * p.head_dim;
  const float* k_base = p.k + b * p.key_stride * kv_row + g * p.head_dim;
  const float* v_base = p.v + b * p.key_stride * kv_row + g * p.head_dim;

  const int64_t row0 = qt * kBq;
  LoadTile<kD, kBq>(q_tile, q_base, q_row, row0, p.queries, p.head_dim);

  int64_t position[kRows];
  bool row_valid[kRows];
  float m[kRows], l[kRows], o[kRows][kDims];
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const int64_t i = row0 + ty + kSide * a;
    row_valid[a] = i < p.queries;
    position[a] = p.query_offset + i;
    m[a] = -INFINITY;
    l[a] = 0.0f;
#pragma unroll
    for (int e = 0; e < kDims; ++e) o[a][e] = 0.0f;
  }

  const int64_t last_row = (row0 + kBq < p.queries ? row0 + kBq : p.queries) - 1;
  int64_t kt_begin, kt_end;
  KeyTileRange(p.query_offset + row0, p.query_offset + last_row, p.window, kBk, &kt_begin, &kt_end);
  for (int64_t kt = kt_begin; kt <= kt_end; ++kt) {
    const int64_t key0 = kt * kBk;
    __syncthreads();  // The previous tile's readers are done.
    LoadTile<kD, kBk>(k_tile, k_base, kv_row, key0, p.keys, p.head_dim);
    LoadTile<kD, kBk>(v_tile, v_base, kv_row, key0, p.keys, p.head_dim);
    __syncthreads();

    float s[kRows][kCols];
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
#pragma unroll
      for (int c = 0; c < kCols; ++c) s[a][c] = 0.0f;
    }
#pragma unroll 4
    for (int d = 0; d < kD; ++d) {
      float qa[kRows], kc[kCols];
#pragma unroll
      for (int a = 0; a < kRows; ++a) qa[a] = q_tile[(ty + kSide * a) * kS + d];
#pragma unroll
      for (int c = 0; c < kCols; ++c) kc[c] = k_tile[(tx + kSide * c) * kS + d];
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
#pragma unroll
        for (int c = 0; c < kCols; ++c) s[a][c] = fmaf(qa[a], kc[c], s[a][c]);
      }
    }

#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      float row_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int64_t key = key0 + tx + kSide * c;
        s[a][c] =
            row_valid[a] && Visible(position[a], key, p.window) ? s[a][c] * p.scale : -INFINITY;
        row_max = fmaxf(row_max, s[a][c]);
      }
      const float m_new = fmaxf(m[a], RowMax(row_max));
      // A row that has seen no key yet keeps l = 0 and O = 0 (exp(-inf) = 0).
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = __expf(m[a] - m_use);
      float row_sum = 0.0f;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const float e = __expf(s[a][c] - m_use);
        row_sum += e;
        p_tile[(ty + kSide * a) * (kBk + 1) + tx + kSide * c] = e;
      }
      l[a] = l[a] * alpha + RowSum(row_sum);
      m[a] = m_new;
#pragma unroll
      for (int e = 0; e < kDims; ++e) o[a][e] *= alpha;
    }
    __syncthreads();

#pragma unroll 2
    for (int j = 0; j < kBk; ++j) {
      float pa[kRows], ve[kDims];
#pragma unroll
      for (int a = 0; a < kRows; ++a) pa[a] = p_tile[(ty + kSide * a) * (kBk + 1) + j];
#pragma unroll
      for (int e = 0; e < kDims; ++e) ve[e] = v_tile[j * kS + tx + kSide * e];
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
#pragma unroll
        for (int e = 0; e < kDims; ++e) o[a][e] = fmaf(pa[a], ve[e], o[a][e]);
      }
    }
  }

#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    if (!row_valid[a]) continue;
    const int64_t i = row0 + ty + kSide * a;
    const float inv = 1.0f / l[a];
    float* out_row = p.out_w + (b * p.queries + i) * q_row + h * p.head_dim;
#pragma unroll
    for (int e = 0; e < kDims; ++e) {
      const int c = tx + kSide * e;
      if (c < p.head_dim) out_row[c] = o[a][e] * inv;
    }
    if (p.lse_w != nullptr && tx == 0) {
      p.lse_w[(b * p.heads + h) * p.queries + i] = m[a] + logf(l[a]);
    }
  }
}

// delta[row] = Σ_c dout·out over the row's head_dim, one warp per row of
// [batch, heads, queries].
__global__ void __launch_bounds__(kThreads) DeltaKernel(Params p) {
  const int64_t rows = p.batch * p.heads * p.queries;
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
  if (row >= rows) return;
  const int lane = threadIdx.x % 32;
  const int64_t i = row % p.queries, h = (row / p.queries) % p.heads,
                b = row / (p.queries * p.heads);
  const int64_t at = ((b * p.queries + i) * p.heads + h) * p.head_dim;
  float sum = 0.0f;
  for (int c = lane; c < p.head_dim; c += 32) sum = fmaf(p.dout[at + c], p.out[at + c], sum);
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  if (lane == 0) p.delta[row] = sum;
}

// dQ: one block per (query tile, sequence, head). Q, dO, lse and delta of the
// tile stay in shared memory and registers; for every visible key tile,
// P = exp(scale·QKᵀ − lse), dS = scale·P ⊙ (dO Vᵀ − delta), dQ += dS K.
template <int kD, int kBq, int kBk>
__global__ void __launch_bounds__(kThreads) DqKernel(Params p) {
  constexpr int kS = RowStride<kD>();
  constexpr int kRows = kBq / kSide, kCols = kBk / kSide, kDims = kD / kSide;
  extern __shared__ float smem[];
  float* q_tile = smem;                // [kBq][kS]
  float* do_tile = q_tile + kBq * kS;  // [kBq][kS]
  float* k_tile = do_tile + kBq * kS;  // [kBk][kS]
  float* v_tile = k_tile + kBk * kS;   // [kBk][kS]
  float* ds_tile = v_tile + kBk * kS;  // [kBq][kBk + 1]

  const int64_t q_tiles = (p.queries + kBq - 1) / kBq;
  const int64_t heads_total = p.batch * p.heads;
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads_total;
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads_total;
  const int64_t b = bh / p.heads;
  const int h = static_cast<int>(bh % p.heads);
  const int g = h / (p.heads / p.kv_heads);
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
  const float* k_base = p.k + b * p.key_stride * kv_row + g * p.head_dim;
  const float* v_base = p.v + b * p.key_stride * kv_row + g * p.head_dim;

  const int64_t row0 = qt * kBq;
  LoadTile<kD, kBq>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim);
  LoadTile<kD, kBq>(do_tile, p.dout + head_offset, q_row, row0, p.queries, p.head_dim);

  bool row_valid[kRows];
  float row_lse[kRows], row_delta[kRows], dq[kRows][kDims];
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    const int64_t i = row0 + ty + kSide * a;
    row_valid[a] = i < p.queries;
    const int64_t stat = (b * p.heads + h) * p.queries + i;
    row_lse[a] = row_valid[a] ? p.lse[stat] : 0.0f;
    row_delta[a] = row_valid[a] ? p.delta[stat] : 0.0f;
#pragma unroll
    for (int e = 0; e < kDims; ++e) dq[a][e] = 0.0f;
  }

  const int64_t last_row = (row0 + kBq < p.queries ? row0 + kBq : p.queries) - 1;
  int64_t kt_begin, kt_end;
  KeyTileRange(row0, last_row, p.window, kBk, &kt_begin, &kt_end);
  for (int64_t kt = kt_begin; kt <= kt_end; ++kt) {
    const int64_t key0 = kt * kBk;
    __syncthreads();
    LoadTile<kD, kBk>(k_tile, k_base, kv_row, key0, p.keys, p.head_dim);
    LoadTile<kD, kBk>(v_tile, v_base, kv_row, key0, p.keys, p.head_dim);
    __syncthreads();

    float s[kRows][kCols], dp[kRows][kCols];
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
#pragma unroll
      for (int c = 0; c < kCols; ++c) s[a][c] = dp[a][c] = 0.0f;
    }
#pragma unroll 4
    for (int d = 0; d < kD; ++d) {
      float qa[kRows], da[kRows], kc[kCols], vc[kCols];
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
        qa[a] = q_tile[(ty + kSide * a) * kS + d];
        da[a] = do_tile[(ty + kSide * a) * kS + d];
      }
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        kc[c] = k_tile[(tx + kSide * c) * kS + d];
        vc[c] = v_tile[(tx + kSide * c) * kS + d];
      }
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          s[a][c] = fmaf(qa[a], kc[c], s[a][c]);
          dp[a][c] = fmaf(da[a], vc[c], dp[a][c]);
        }
      }
    }
#pragma unroll
    for (int a = 0; a < kRows; ++a) {
      const int64_t i = row0 + ty + kSide * a;
#pragma unroll
      for (int c = 0; c < kCols; ++c) {
        const int64_t key = key0 + tx + kSide * c;
        float ds = 0.0f;
        if (row_valid[a] && Visible(i, key, p.window)) {
          const float prob = __expf(s[a][c] * p.scale - row_lse[a]);
          ds = p.scale * prob * (dp[a][c] - row_delta[a]);
        }
        ds_tile[(ty + kSide * a) * (kBk + 1) + tx + kSide * c] = ds;
      }
    }
    __syncthreads();

#pragma unroll 2
    for (int j = 0; j < kBk; ++j) {
      float da[kRows], ke[kDims];
#pragma unroll
      for (int a = 0; a < kRows; ++a) da[a] = ds_tile[(ty + kSide * a) * (kBk + 1) + j];
#pragma unroll
      for (int e = 0; e < kDims; ++e) ke[e] = k_tile[j * kS + tx + kSide * e];
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
#pragma unroll
        for (int e = 0; e < kDims; ++e) dq[a][e] = fmaf(da[a], ke[e], dq[a][e]);
      }
    }
  }

#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    if (!row_valid[a]) continue;
    const int64_t i = row0 + ty + kSide * a;
    float* dq_row = p.dq + head_offset + i * q_row;
#pragma unroll
    for (int e = 0; e < kDims; ++e) {
      const int c = tx + kSide * e;
      if (c < p.head_dim) dq_row[c] = dq[a][e];
    }
  }
}

// dK and dV: one block per (key tile, sequence, KV head), looping over the
// heads of the group and the query tiles that see the key tile, in a fixed
// order. Scores are computed transposed (keys as rows) so that each thread
// accumulates the dK and dV rows of its own keys.
template <int kD, int kBk, int kBq>
__global__ void __launch_bounds__(kThreads) DkDvKernel(Params p) {
  constexpr int kS = RowStride<kD>();
  constexpr int kRows = kBk / kSide, kCols = kBq / kSide, kDims = kD / kSide;
  extern __shared__ float smem[];
  float* k_tile = smem;                         // [kBk][kS]
  float* v_tile = k_tile + kBk * kS;            // [kBk][kS]
  float* q_tile = v_tile + kBk * kS;            // [kBq][kS]
  float* do_tile = q_tile + kBq * kS;           // [kBq][kS]
  float* p_tile = do_tile + kBq * kS;           // [kBk][kBq + 1], P transposed
  float* ds_tile = p_tile + kBk * (kBq + 1);    // [kBk][kBq + 1], dS transposed
  float* lse_tile = ds_tile + kBk * (kBq + 1);  // [kBq]
  float* delta_tile = lse_tile + kBq;           // [kBq]

  const int64_t groups_total = p.batch * p.kv_heads;
  // The first key tiles are seen by the most queries: start them first.
  const int64_t kt = static_cast<int64_t>(blockIdx.x) / groups_total;
  const int64_t bg = static_cast<int64_t>(blockIdx.x) % groups_total;
  const int64_t b = bg / p.kv_heads;
  const int g = static_cast<int>(bg % p.kv_heads);
  const int group = p.heads / p.kv_heads;
  const int tx = threadIdx.x % kSide, ty = threadIdx.x / kSide;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t kv_offset = b * p.key_stride * kv_row + g * p.head_dim;

  const int64_t key0 = kt * kBk;
  LoadTile<kD, kBk>(k_tile, p.k + kv_offset, kv_row, key0, p.keys, p.head_dim);
  LoadTile<kD, kBk>(v_tile, p.v + kv_offset, kv_row, key0, p.keys, p.head_dim);

  int64_t key[kRows];
  float dk[kRows][kDims], dv[kRows][kDims];
#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    key[a] = key0 + ty + kSide * a;
#pragma unroll
    for (int e = 0; e < kDims; ++e) dk[a][e] = dv[a][e] = 0.0f;
  }

  // Queries that see a key of [key0, last_key]: from key0 to last_key + window - 1.
  const int64_t last_key = (key0 + kBk < p.keys ? key0 + kBk : p.keys) - 1;
  const int64_t last_query = p.window > 0 && last_key + p.window - 1 < p.queries - 1
                                 ? last_key + p.window - 1
                                 : p.queries - 1;
  const int64_t qt_begin = key0 / kBq, qt_end = last_query / kBq;
  for (int hh = 0; hh < group; ++hh) {
    const int h = g * group + hh;
    const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
    const int64_t stat_offset = (b * p.heads + h) * p.queries;
    for (int64_t qt = qt_begin; qt <= qt_end; ++qt) {
      const int64_t row0 = qt * kBq;
      __syncthreads();
      LoadTile<kD, kBq>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim);
      LoadTile<kD, kBq>(do_tile, p.dout + head_offset, q_row, row0, p.queries, p.head_dim);
      for (int r = threadIdx.x; r < kBq; r += kThreads) {
        const bool valid = row0 + r < p.queries;
        lse_tile[r] = valid ? p.lse[stat_offset + row0 + r] : 0.0f;
        delta_tile[r] = valid ? p.delta[stat_offset + row0 + r] : 0.0f;
      }
      __syncthreads();

      float s[kRows][kCols], dp[kRows][kCols];
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
#pragma unroll
        for (int c = 0; c < kCols; ++c) s[a][c] = dp[a][c] = 0.0f;
      }
#pragma unroll 4
      for (int d = 0; d < kD; ++d) {
        float ka[kRows], va[kRows], qc[kCols], dc[kCols];
#pragma unroll
        for (int a = 0; a < kRows; ++a) {
          ka[a] = k_tile[(ty + kSide * a) * kS + d];
          va[a] = v_tile[(ty + kSide * a) * kS + d];
        }
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          qc[c] = q_tile[(tx + kSide * c) * kS + d];
          dc[c] = do_tile[(tx + kSide * c) * kS + d];
        }
#pragma unroll
        for (int a = 0; a < kRows; ++a) {
#pragma unroll
          for (int c = 0; c < kCols; ++c) {
            s[a][c] = fmaf(ka[a], qc[c], s[a][c]);
            dp[a][c] = fmaf(va[a], dc[c], dp[a][c]);
          }
        }
      }
#pragma unroll
      for (int a = 0; a < kRows; ++a) {
#pragma unroll
        for (int c = 0; c < kCols; ++c) {
          const int col = tx + kSide * c;
          const int64_t i = row0 + col;
          float prob = 0.0f, ds = 0.0f;
          if (key[a] < p.keys && i < p.queries && Visible(i, key[a], p.window)) {
            prob = __expf(s[a][c] * p.scale - lse_tile[col]);
            ds = p.scale * prob * (dp[a][c] - delta_tile[col]);
          }
          p_tile[(ty + kSide * a) * (kBq + 1) + col] = prob;
          ds_tile[(ty + kSide * a) * (kBq + 1) + col] = ds;
        }
      }
      __syncthreads();

#pragma unroll 2
      for (int i = 0; i < kBq; ++i) {
        float pa[kRows], da[kRows], qe[kDims], de[kDims];
#pragma unroll
        for (int a = 0; a < kRows; ++a) {
          pa[a] = p_tile[(ty + kSide * a) * (kBq + 1) + i];
          da[a] = ds_tile[(ty + kSide * a) * (kBq + 1) + i];
        }
#pragma unroll
        for (int e = 0; e < kDims; ++e) {
          qe[e] = q_tile[i * kS + tx + kSide * e];
          de[e] = do_tile[i * kS + tx + kSide * e];
        }
#pragma unroll
        for (int a = 0; a < kRows; ++a) {
#pragma unroll
          for (int e = 0; e < kDims; ++e) {
            dv[a][e] = fmaf(pa[a], de[e], dv[a][e]);
            dk[a][e] = fmaf(da[a], qe[e], dk[a][e]);
          }
        }
      }
    }
  }

#pragma unroll
  for (int a = 0; a < kRows; ++a) {
    if (key[a] >= p.keys) continue;
    const int64_t at = kv_offset + key[a] * kv_row;
#pragma unroll
    for (int e = 0; e < kDims; ++e) {
      const int c = tx + kSide * e;
      if (c < p.head_dim) {
        p.dk[at + c] = dk[a][e];
        p.dv[at + c] = dv[a][e];
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Tensor-core kernels: the same algorithm with the four products per tile
// (QKᵀ, dO Vᵀ and the accumulations) on WMMA 16×16×8 TF32 tiles with fp32
// accumulation. Tiles are copied to shared memory with cp.async, the next
// tile while the current one is in use (two buffers), and rounded to TF32
// (10-bit mantissa) as fragments are loaded; softmax, masking and dS stay in
// fp32 SIMT code. 8 warps; shared rows are kD + 4 floats apart (WMMA needs a
// multiple of 4 floats and 32-byte aligned fragment starts; 16-byte skew
// between rows).

namespace wmma = nvcuda::wmma;
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;
constexpr int kWarps = kThreads / 32;

template <int kD>
constexpr int TcStride() {
  return kD + 4;
}

// Asynchronous global-to-shared copies (sm_80+). A source size of 0 copies
// nothing and zero-fills the destination; `src` must still be a valid address.
__device__ __forceinline__ void CpAsync16(float* dst, const float* src, bool valid) {
  const unsigned dst_addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst_addr), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void CpAsync4(float* dst, const float* src, bool valid) {
  const unsigned dst_addr = static_cast<unsigned>(__cvta_generic_to_shared(dst));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst_addr), "l"(src),
               "r"(valid ? 4 : 0));
}

// Starts copying a tile as LoadTile does (zeros beyond `rows` and head_dim),
// rows TcStride apart. `vec4`: head_dim is a multiple of 4 and src 16-byte
// aligned, so rows copy in 16-byte pieces (TcStride and the tile offsets are
// multiples of 4 floats).
template <int kD, int kRows>
__device__ __forceinline__ void LoadTileAsync(float* tile, const float* __restrict__ src,
                                              int64_t row_stride, int64_t row0, int64_t rows,
                                              int head_dim, bool vec4) {
  if (vec4) {
    for (int idx = threadIdx.x; idx < kRows * kD / 4; idx += kThreads) {
      const int r = idx / (kD / 4), c = 4 * (idx % (kD / 4));
      const int64_t row = row0 + r;
      const bool valid = row < rows && c < head_dim;
      CpAsync16(tile + r * TcStride<kD>() + c, valid ? src + row * row_stride + c : src, valid);
    }
    return;
  }
  for (int idx = threadIdx.x; idx < kRows * kD; idx += kThreads) {
    const int r = idx / kD, c = idx % kD;
    const int64_t row = row0 + r;
    const bool valid = row < rows && c < head_dim;
    CpAsync4(tile + r * TcStride<kD>() + c, valid ? src + row * row_stride + c : src, valid);
  }
}

// Starts copying src[row0, row0 + kRows) (zeros from `rows` on).
template <int kRows>
__device__ __forceinline__ void LoadRowsAsync(float* dst, const float* __restrict__ src,
                                              int64_t row0, int64_t rows) {
  for (int r = threadIdx.x; r < kRows; r += kThreads) {
    const bool valid = row0 + r < rows;
    CpAsync4(dst + r, valid ? src + row0 + r : src, valid);
  }
}

template <typename Frag>
__device__ __forceinline__ void RoundToTf32(Frag& frag) {
#pragma unroll
  for (int i = 0; i < Frag::num_elements; ++i) frag.x[i] = wmma::__float_to_tf32(frag.x[i]);
}

// acc (16 × 16) += a · b over kK: a is 16 × kK, row-major at `a` (rows lda
// apart); b is kK × 16, row-major at `b` (kBRowMajor: kK rows ldb apart) or
// the transpose of 16 rows of length kK at `b` (rows ldb apart).
template <int kK, bool kBRowMajor>
__device__ __forceinline__ void MmaAccumulate(FragC& acc, const float* a, int lda, const float* b,
                                              int ldb) {
#pragma unroll 4
  for (int k0 = 0; k0 < kK; k0 += 8) {
    FragA fa;
    wmma::load_matrix_sync(fa, a + k0, lda);
    RoundToTf32(fa);
    if constexpr (kBRowMajor) {
      FragBRow fb;
      wmma::load_matrix_sync(fb, b + k0 * ldb, ldb);
      RoundToTf32(fb);
      wmma::mma_sync(acc, fa, fb, acc);
    } else {
      FragBCol fb;
      wmma::load_matrix_sync(fb, b + k0, ldb);
      RoundToTf32(fb);
      wmma::mma_sync(acc, fa, fb, acc);
    }
  }
}

// Forward on tensor cores: 64 queries × 32 keys per step. Warp w computes
// score tile (w / 2, w % 2) and owns output tiles of row tile w / 2, columns
// (w % 2) · kD/32 onwards. The online softmax's per-row rescaling of the
// output fragments uses each element's row, read once from a fragment loaded
// from a matrix of row numbers (the fragment layout itself is opaque).
// With kC > 1 (few query tiles for the GPU) a cluster of kC blocks shares a
// query tile, block r taking key tiles r, r + kC, ...; their partial softmax
// states are merged in rank order through distributed shared memory, each
// block finishing kBq / kC rows.
template <int kD, int kC>
__global__ void __launch_bounds__(kThreads) ForwardTcKernel(Params p) {
  constexpr int kBq = 64, kBk = 32, kLd = TcStride<kD>(), kSld = kBk + 4;
  constexpr int kOutFrags = kD / 32;  // Per warp: 4 row tiles × kD/16 columns over 8 warps.
  extern __shared__ __align__(128) float tc_smem[];
  float* q_tile = tc_smem;                   // [kBq][kLd]
  float* kv_tiles = q_tile + kBq * kLd;      // 2 buffers of K [kBk][kLd], V [kBk][kLd]
  float* s_tile = kv_tiles + 4 * kBk * kLd;  // [kBq][kSld]: scores, then P
  float* row_ids = s_tile + kBq * kSld;      // [16][16]: row numbers
  float* row_alpha = row_ids + 256;          // [kBq]
  float* row_l = row_alpha + kBq;            // [kBq]
  float* row_m = row_l + kBq;                // [kBq]

  const int64_t q_tiles = (p.queries + kBq - 1) / kBq;
  const int64_t heads_total = p.batch * p.heads;
  const int64_t unit =
      static_cast<int64_t>(blockIdx.x) / kC;  // Clusters are kC consecutive blocks.
  const int rank = static_cast<int>(blockIdx.x % kC);
  const int64_t qt = q_tiles - 1 - unit / heads_total;
  const int64_t bh = unit % heads_total;
  const int64_t b = bh / p.heads;
  const int h = static_cast<int>(bh % p.heads);
  const int g = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
  const float* k_base = p.k + b * p.key_stride * kv_row + g * p.head_dim;
  const float* v_base = p.v + b * p.key_stride * kv_row + g * p.head_dim;

  const int64_t row0 = qt * kBq;
  const int64_t last_row = (row0 + kBq < p.queries ? row0 + kBq : p.queries) - 1;
  int64_t kt_begin, kt_end;
  KeyTileRange(p.query_offset + row0, p.query_offset + last_row, p.window, kBk, &kt_begin, &kt_end);
  const int64_t tiles = kt_end - kt_begin + 1;
  const int64_t my_tiles = rank < tiles ? (tiles - rank + kC - 1) / kC : 0;
  auto load_kv = [&](int64_t kt, int buf) {
    float* k_tile = kv_tiles + 2 * buf * kBk * kLd;
    LoadTileAsync<kD, kBk>(k_tile, k_base, kv_row, kt * kBk, p.keys, p.head_dim, p.vec4);
    LoadTileAsync<kD, kBk>(k_tile + kBk * kLd, v_base, kv_row, kt * kBk, p.keys, p.head_dim,
                           p.vec4);
  };
  LoadTileAsync<kD, kBq>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim, p.vec4);
  if (my_tiles > 0) load_kv(kt_begin + rank, 0);
  CpAsyncCommit();
  row_ids[threadIdx.x] = static_cast<float>(threadIdx.x / 16);
  __syncthreads();

  const int out_row_tile = warp / 2, out_col_tile0 = (warp % 2) * kOutFrags;
  int frag_row[FragC::num_elements];
  {
    FragC ids;
    wmma::load_matrix_sync(ids, row_ids, 16, wmma::mem_row_major);
#pragma unroll
    for (int i = 0; i < FragC::num_elements; ++i) {
      frag_row[i] = out_row_tile * 16 + static_cast<int>(ids.x[i]);
    }
  }
  FragC o[kOutFrags];
#pragma unroll
  for (int f = 0; f < kOutFrags; ++f) wmma::fill_fragment(o[f], 0.0f);

  // Softmax: thread t handles 8 scores of row t / 4; a row's 4 threads are a
  // lane quad.
  const int srow = threadIdx.x / 4, spart = threadIdx.x % 4;
  const int64_t position = p.query_offset + row0 + srow;
  const bool row_valid = row0 + srow < p.queries;
  float m = -INFINITY, l = 0.0f;

  for (int64_t it = 0; it < my_tiles; ++it) {
    const int64_t kt = kt_begin + rank + it * kC;
    const int64_t key0 = kt * kBk;
    const int buf = static_cast<int>(it & 1);
    const float* k_tile = kv_tiles + 2 * buf * kBk * kLd;
    const float* v_tile = k_tile + kBk * kLd;
    __syncthreads();  // The previous step's readers of the other buffer and of P are done.
    if (it + 1 < my_tiles) {
      load_kv(kt + kC, buf ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // This step's tiles have landed for every thread.
    {
      const int rt = warp / 2, ct = warp % 2;
      FragC s;
      wmma::fill_fragment(s, 0.0f);
      MmaAccumulate<kD, false>(s, q_tile + rt * 16 * kLd, kLd, k_tile + ct * 16 * kLd, kLd);
      wmma::store_matrix_sync(s_tile + rt * 16 * kSld + ct * 16, s, kSld, wmma::mem_row_major);
    }
    __syncthreads();
    {
      float x[8];
      float row_max = -INFINITY;
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const int col = spart * 8 + c;
        const int64_t key = key0 + col;
        x[c] = row_valid && Visible(position, key, p.window) ? s_tile[srow * kSld + col] * p.scale
                                                             : -INFINITY;
        row_max = fmaxf(row_max, x[c]);
      }
      row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 1));
      row_max = fmaxf(row_max, __shfl_xor_sync(0xffffffffu, row_max, 2));
      const float m_new = fmaxf(m, row_max);
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = __expf(m - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int c = 0; c < 8; ++c) {
        const float e = __expf(x[c] - m_use);
        sum += e;
        s_tile[srow * kSld + spart * 8 + c] = wmma::__float_to_tf32(e);
      }
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      l = l * alpha + sum;
      m = m_new;
      if (spart == 0) row_alpha[srow] = alpha;
    }
    __syncthreads();
#pragma unroll
    for (int f = 0; f < kOutFrags; ++f) {
#pragma unroll
      for (int i = 0; i < FragC::num_elements; ++i) o[f].x[i] *= row_alpha[frag_row[i]];
    }
#pragma unroll
    for (int k0 = 0; k0 < kBk; k0 += 8) {
      FragA pa;
      wmma::load_matrix_sync(pa, s_tile + out_row_tile * 16 * kSld + k0, kSld);
#pragma unroll
      for (int f = 0; f < kOutFrags; ++f) {
        FragBRow vb;
        wmma::load_matrix_sync(vb, v_tile + k0 * kLd + (out_col_tile0 + f) * 16, kLd);
        RoundToTf32(vb);
        wmma::mma_sync(o[f], pa, vb, o[f]);
      }
    }
  }

  if (spart == 0) {
    row_l[srow] = l;
    row_m[srow] = m;
  }
  CpAsyncWait<0>();  // Nothing in flight, also in a block without key tiles.
  __syncthreads();   // Also: every reader of q_tile is done.
  if constexpr (kC == 1) {
#pragma unroll
    for (int f = 0; f < kOutFrags; ++f) {
#pragma unroll
      for (int i = 0; i < FragC::num_elements; ++i) {
        const float row_sum = row_l[frag_row[i]];
        o[f].x[i] *= row_sum > 0.0f ? 1.0f / row_sum : 0.0f;
      }
      wmma::store_matrix_sync(q_tile + out_row_tile * 16 * kLd + (out_col_tile0 + f) * 16, o[f],
                              kLd, wmma::mem_row_major);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kBq * kD; idx += kThreads) {
      const int r = idx / kD, c = idx % kD;
      if (row0 + r < p.queries && c < p.head_dim) {
        p.out_w[head_offset + (row0 + r) * q_row + c] = q_tile[r * kLd + c];
      }
    }
    if (p.lse_w != nullptr && threadIdx.x < kBq && row0 + threadIdx.x < p.queries) {
      p.lse_w[(b * p.heads + h) * p.queries + row0 + threadIdx.x] =
          row_m[threadIdx.x] + logf(row_l[threadIdx.x]);
    }
  } else {
    // Unnormalised partial outputs (relative to this block's row max) go to
    // q_tile; block r merges rows [r, r + 1) · kBq / kC of all kC blocks.
#pragma unroll
    for (int f = 0; f < kOutFrags; ++f) {
      wmma::store_matrix_sync(q_tile + out_row_tile * 16 * kLd + (out_col_tile0 + f) * 16, o[f],
                              kLd, wmma::mem_row_major);
    }
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    cluster.sync();  // Every block's partial state is in its shared memory.
    constexpr int kRowsPerRank = kBq / kC;
    for (int idx = threadIdx.x; idx < kRowsPerRank * kD; idx += kThreads) {
      const int r = rank * kRowsPerRank + idx / kD, c = idx % kD;
      if (row0 + r >= p.queries || c >= p.head_dim) continue;
      // A block that saw none of the row's keys has m = -inf and weighs 0;
      // some block saw the query's own key, so the max is finite.
      float max = -INFINITY;
#pragma unroll
      for (int source = 0; source < kC; ++source) {
        max = fmaxf(max, cluster.map_shared_rank(row_m, source)[r]);
      }
      float sum = 0.0f, acc = 0.0f;
#pragma unroll
      for (int source = 0; source < kC; ++source) {
        const float weight = __expf(cluster.map_shared_rank(row_m, source)[r] - max);
        sum += cluster.map_shared_rank(row_l, source)[r] * weight;
        acc += cluster.map_shared_rank(q_tile, source)[r * kLd + c] * weight;
      }
      p.out_w[head_offset + (row0 + r) * q_row + c] = acc / sum;
      if (c == 0 && p.lse_w != nullptr) {
        p.lse_w[(b * p.heads + h) * p.queries + row0 + r] = max + logf(sum);
      }
    }
    cluster.sync();  // No block leaves while others read its shared memory.
  }
}

// dQ on tensor cores: kBq queries (64; 32 at kD 256) × 32 keys per step.
// Warps split the score and dO Vᵀ tiles, then the dQ tiles.
template <int kD, int kBq>
__global__ void __launch_bounds__(kThreads) DqTcKernel(Params p) {
  constexpr int kBk = 32, kLd = TcStride<kD>(), kSld = kBk + 4;
  constexpr int kScoreTiles = (kBq / 16) * (kBk / 16);
  constexpr int kJobs = 2 * kScoreTiles / kWarps;  // S and dP tiles per warp.
  constexpr int kDqFrags = (kBq / 16) * (kD / 16) / kWarps;
  static_assert(kJobs >= 1 && kDqFrags >= 1, "tiles too small for 8 warps");
  extern __shared__ __align__(128) float tc_smem[];
  float* q_tile = tc_smem;                   // [kBq][kLd]
  float* do_tile = q_tile + kBq * kLd;       // [kBq][kLd]
  float* kv_tiles = do_tile + kBq * kLd;     // 2 buffers of K [kBk][kLd], V [kBk][kLd]
  float* s_tile = kv_tiles + 4 * kBk * kLd;  // [kBq][kSld]: scores, then dS
  float* dp_tile = s_tile + kBq * kSld;      // [kBq][kSld]
  float* lse_tile = dp_tile + kBq * kSld;    // [kBq]
  float* delta_tile = lse_tile + kBq;        // [kBq]

  const int64_t q_tiles = (p.queries + kBq - 1) / kBq;
  const int64_t heads_total = p.batch * p.heads;
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads_total;
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads_total;
  const int64_t b = bh / p.heads;
  const int h = static_cast<int>(bh % p.heads);
  const int g = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
  const int64_t stat_offset = (b * p.heads + h) * p.queries;
  const float* k_base = p.k + b * p.key_stride * kv_row + g * p.head_dim;
  const float* v_base = p.v + b * p.key_stride * kv_row + g * p.head_dim;

  const int64_t row0 = qt * kBq;
  const int64_t last_row = (row0 + kBq < p.queries ? row0 + kBq : p.queries) - 1;
  int64_t kt_begin, kt_end;
  KeyTileRange(row0, last_row, p.window, kBk, &kt_begin, &kt_end);
  auto load_kv = [&](int64_t kt, int buf) {
    float* k_tile = kv_tiles + 2 * buf * kBk * kLd;
    LoadTileAsync<kD, kBk>(k_tile, k_base, kv_row, kt * kBk, p.keys, p.head_dim, p.vec4);
    LoadTileAsync<kD, kBk>(k_tile + kBk * kLd, v_base, kv_row, kt * kBk, p.keys, p.head_dim,
                           p.vec4);
  };
  LoadTileAsync<kD, kBq>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim, p.vec4);
  LoadTileAsync<kD, kBq>(do_tile, p.dout + head_offset, q_row, row0, p.queries, p.head_dim, p.vec4);
  LoadRowsAsync<kBq>(lse_tile, p.lse + stat_offset, row0, p.queries);
  LoadRowsAsync<kBq>(delta_tile, p.delta + stat_offset, row0, p.queries);
  load_kv(kt_begin, 0);
  CpAsyncCommit();
  FragC dq[kDqFrags];
#pragma unroll
  for (int f = 0; f < kDqFrags; ++f) wmma::fill_fragment(dq[f], 0.0f);

  for (int64_t kt = kt_begin; kt <= kt_end; ++kt) {
    const int64_t key0 = kt * kBk;
    const int buf = static_cast<int>((kt - kt_begin) & 1);
    const float* k_tile = kv_tiles + 2 * buf * kBk * kLd;
    const float* v_tile = k_tile + kBk * kLd;
    __syncthreads();  // The previous step's readers of the other buffer and of dS are done.
    if (kt < kt_end) {
      load_kv(kt + 1, buf ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // This step's tiles have landed for every thread.
#pragma unroll
    for (int j = 0; j < kJobs; ++j) {
      const int job = warp * kJobs + j;
      const bool is_dp = job >= kScoreTiles;
      const int tile = is_dp ? job - kScoreTiles : job;
      const int rt = tile / (kBk / 16), ct = tile % (kBk / 16);
      FragC s;
      wmma::fill_fragment(s, 0.0f);
      MmaAccumulate<kD, false>(s, (is_dp ? do_tile : q_tile) + rt * 16 * kLd, kLd,
                               (is_dp ? v_tile : k_tile) + ct * 16 * kLd, kLd);
      wmma::store_matrix_sync((is_dp ? dp_tile : s_tile) + rt * 16 * kSld + ct * 16, s, kSld,
                              wmma::mem_row_major);
    }
    __syncthreads();
    for (int idx = threadIdx.x; idx < kBq * kBk; idx += kThreads) {
      const int r = idx / kBk, c = idx % kBk;
      const int64_t i = row0 + r, key = key0 + c;
      float ds = 0.0f;
      if (i < p.queries && Visible(i, key, p.window)) {
        const float prob = __expf(s_tile[r * kSld + c] * p.scale - lse_tile[r]);
        ds = p.scale * prob * (dp_tile[r * kSld + c] - delta_tile[r]);
      }
      s_tile[r * kSld + c] = wmma::__float_to_tf32(ds);
    }
    __syncthreads();
#pragma unroll
    for (int f = 0; f < kDqFrags; ++f) {
      const int tile = warp * kDqFrags + f;
      const int rt = tile / (kD / 16), ct = tile % (kD / 16);
      MmaAccumulate<kBk, true>(dq[f], s_tile + rt * 16 * kSld, kSld, k_tile + ct * 16, kLd);
    }
  }

  __syncthreads();  // Every reader of q_tile is done.
#pragma unroll
  for (int f = 0; f < kDqFrags; ++f) {
    const int tile = warp * kDqFrags + f;
    const int rt = tile / (kD / 16), ct = tile % (kD / 16);
    wmma::store_matrix_sync(q_tile + rt * 16 * kLd + ct * 16, dq[f], kLd, wmma::mem_row_major);
  }
  __syncthreads();
  for (int idx = threadIdx.x; idx < kBq * kD; idx += kThreads) {
    const int r = idx / kD, c = idx % kD;
    if (row0 + r < p.queries && c < p.head_dim) {
      p.dq[head_offset + (row0 + r) * q_row + c] = q_tile[r * kLd + c];
    }
  }
}

// dK and dV on tensor cores: 32 keys per cluster of kC blocks, 32 queries per
// step, over the heads of the group. Scores are transposed (keys as rows);
// warps split the Sᵀ and dPᵀ tiles, then the dV and dK tiles. With kC > 1
// (few key tiles for the GPU) block r of the cluster takes steps r, r + kC,
// ..., and the partial sums are added in rank order through distributed
// shared memory, each block summing kBk / kC rows: deterministic, without a
// global workspace.
template <int kD, int kC>
__global__ void __launch_bounds__(kThreads) DkDvTcKernel(Params p) {
  constexpr int kBk = 32, kBq = 32, kLd = TcStride<kD>(), kSld = kBq + 4;
  constexpr int kScoreTiles = (kBk / 16) * (kBq / 16);
  constexpr int kJobs = 2 * kScoreTiles / kWarps;
  constexpr int kGradTiles = (kBk / 16) * (kD / 16);  // Of dV, and again of dK.
  constexpr int kGradFrags = 2 * kGradTiles / kWarps;
  static_assert(kJobs >= 1 && kGradFrags >= 1, "tiles too small for 8 warps");
  extern __shared__ __align__(128) float tc_smem[];
  float* k_tile = tc_smem;                    // [kBk][kLd]
  float* v_tile = k_tile + kBk * kLd;         // [kBk][kLd]
  float* qdo_tiles = v_tile + kBk * kLd;      // 2 buffers of Q [kBq][kLd], dO [kBq][kLd]
  float* p_tile = qdo_tiles + 4 * kBq * kLd;  // [kBk][kSld]: Sᵀ, then Pᵀ
  float* ds_tile = p_tile + kBk * kSld;       // [kBk][kSld]: dPᵀ, then dSᵀ
  float* stat_tiles = ds_tile + kBk * kSld;   // 2 buffers of lse [kBq], delta [kBq]

  const int64_t groups_total = p.batch * p.kv_heads;
  const int64_t unit =
      static_cast<int64_t>(blockIdx.x) / kC;  // Clusters are kC consecutive blocks.
  const int rank = static_cast<int>(blockIdx.x % kC);
  const int64_t kt = unit / groups_total;
  const int64_t bg = unit % groups_total;
  const int64_t b = bg / p.kv_heads;
  const int g = static_cast<int>(bg % p.kv_heads);
  const int group = p.heads / p.kv_heads;
  const int warp = threadIdx.x / 32;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t kv_offset = b * p.key_stride * kv_row + g * p.head_dim;

  const int64_t key0 = kt * kBk;
  const int64_t last_key = (key0 + kBk < p.keys ? key0 + kBk : p.keys) - 1;
  const int64_t last_query = p.window > 0 && last_key + p.window - 1 < p.queries - 1
                                 ? last_key + p.window - 1
                                 : p.queries - 1;
  // Steps run over (head of the group, query tile), query tiles innermost.
  const int64_t qt_begin = key0 / kBq, q_steps = last_query / kBq - qt_begin + 1;
  const int64_t steps = group * q_steps;
  const int64_t my_steps = rank < steps ? (steps - rank + kC - 1) / kC : 0;
  auto load_queries = [&](int64_t step, int buf) {
    const int h = g * group + static_cast<int>(step / q_steps);
    const int64_t row0 = (qt_begin + step % q_steps) * kBq;
    const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
    const int64_t stat_offset = (b * p.heads + h) * p.queries;
    float* q_tile = qdo_tiles + 2 * buf * kBq * kLd;
    float* stats = stat_tiles + 2 * buf * kBq;
    LoadTileAsync<kD, kBq>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim, p.vec4);
    LoadTileAsync<kD, kBq>(q_tile + kBq * kLd, p.dout + head_offset, q_row, row0, p.queries,
                           p.head_dim, p.vec4);
    LoadRowsAsync<kBq>(stats, p.lse + stat_offset, row0, p.queries);
    LoadRowsAsync<kBq>(stats + kBq, p.delta + stat_offset, row0, p.queries);
  };
  LoadTileAsync<kD, kBk>(k_tile, p.k + kv_offset, kv_row, key0, p.keys, p.head_dim, p.vec4);
  LoadTileAsync<kD, kBk>(v_tile, p.v + kv_offset, kv_row, key0, p.keys, p.head_dim, p.vec4);
  if (my_steps > 0) load_queries(rank, 0);
  CpAsyncCommit();
  // Fragment f of this warp: dV tiles first, then dK tiles.
  FragC grad[kGradFrags];
#pragma unroll
  for (int f = 0; f < kGradFrags; ++f) wmma::fill_fragment(grad[f], 0.0f);

  for (int64_t it = 0; it < my_steps; ++it) {
    {
      const int64_t step = rank + it * kC;
      const int64_t row0 = (qt_begin + step % q_steps) * kBq;
      const int buf = static_cast<int>(it & 1);
      const float* q_tile = qdo_tiles + 2 * buf * kBq * kLd;
      const float* do_tile = q_tile + kBq * kLd;
      const float* lse_tile = stat_tiles + 2 * buf * kBq;
      const float* delta_tile = lse_tile + kBq;
      __syncthreads();  // The previous step's readers of the other buffer and of Pᵀ, dSᵀ are done.
      if (it + 1 < my_steps) {
        load_queries(step + kC, buf ^ 1);
        CpAsyncCommit();
        CpAsyncWait<1>();
      } else {
        CpAsyncWait<0>();
      }
      __syncthreads();  // This step's tiles have landed for every thread.
#pragma unroll
      for (int j = 0; j < kJobs; ++j) {
        const int job = warp * kJobs + j;
        const bool is_dp = job >= kScoreTiles;
        const int tile = is_dp ? job - kScoreTiles : job;
        const int rt = tile / (kBq / 16), ct = tile % (kBq / 16);
        FragC s;
        wmma::fill_fragment(s, 0.0f);
        MmaAccumulate<kD, false>(s, (is_dp ? v_tile : k_tile) + rt * 16 * kLd, kLd,
                                 (is_dp ? do_tile : q_tile) + ct * 16 * kLd, kLd);
        wmma::store_matrix_sync((is_dp ? ds_tile : p_tile) + rt * 16 * kSld + ct * 16, s, kSld,
                                wmma::mem_row_major);
      }
      __syncthreads();
      for (int idx = threadIdx.x; idx < kBk * kBq; idx += kThreads) {
        const int r = idx / kBq, c = idx % kBq;
        const int64_t key = key0 + r, i = row0 + c;
        float prob = 0.0f, ds = 0.0f;
        if (key < p.keys && i < p.queries && Visible(i, key, p.window)) {
          prob = __expf(p_tile[r * kSld + c] * p.scale - lse_tile[c]);
          ds = p.scale * prob * (ds_tile[r * kSld + c] - delta_tile[c]);
        }
        p_tile[r * kSld + c] = wmma::__float_to_tf32(prob);
        ds_tile[r * kSld + c] = wmma::__float_to_tf32(ds);
      }
      __syncthreads();
#pragma unroll
      for (int f = 0; f < kGradFrags; ++f) {
        const int job = warp * kGradFrags + f;
        const bool is_dk = job >= kGradTiles;
        const int tile = is_dk ? job - kGradTiles : job;
        const int rt = tile / (kD / 16), ct = tile % (kD / 16);
        // dV += Pᵀ dO, dK += dSᵀ Q.
        MmaAccumulate<kBq, true>(grad[f], (is_dk ? ds_tile : p_tile) + rt * 16 * kSld, kSld,
                                 (is_dk ? q_tile : do_tile) + ct * 16, kLd);
      }
    }
  }

  // Every reader of the query buffers is done (and every copy has landed, also
  // in a block without steps): dV goes to the first Q buffer, dK to the first
  // dO buffer.
  CpAsyncWait<0>();
  __syncthreads();
  float* dv_tile = qdo_tiles;
  float* dk_tile = qdo_tiles + kBq * kLd;
  static_assert(kBq == kBk, "dK and dV reuse query buffers");
#pragma unroll
  for (int f = 0; f < kGradFrags; ++f) {
    const int job = warp * kGradFrags + f;
    const bool is_dk = job >= kGradTiles;
    const int tile = is_dk ? job - kGradTiles : job;
    const int rt = tile / (kD / 16), ct = tile % (kD / 16);
    wmma::store_matrix_sync((is_dk ? dk_tile : dv_tile) + rt * 16 * kLd + ct * 16, grad[f], kLd,
                            wmma::mem_row_major);
  }
  constexpr int kRowsPerRank = kBk / kC;
  if constexpr (kC == 1) {
    __syncthreads();
    for (int idx = threadIdx.x; idx < kBk * kD; idx += kThreads) {
      const int r = idx / kD, c = idx % kD;
      if (key0 + r < p.keys && c < p.head_dim) {
        const int64_t at = kv_offset + (key0 + r) * kv_row + c;
        p.dv[at] = dv_tile[r * kLd + c];
        p.dk[at] = dk_tile[r * kLd + c];
      }
    }
  } else {
    cooperative_groups::cluster_group cluster = cooperative_groups::this_cluster();
    cluster.sync();  // Every block's partial sums are in its shared memory.
    for (int idx = threadIdx.x; idx < kRowsPerRank * kD; idx += kThreads) {
      const int r = rank * kRowsPerRank + idx / kD, c = idx % kD;
      if (key0 + r < p.keys && c < p.head_dim) {
        float dv_sum = 0.0f, dk_sum = 0.0f;
#pragma unroll
        for (int source = 0; source < kC; ++source) {
          dv_sum += cluster.map_shared_rank(dv_tile, source)[r * kLd + c];
          dk_sum += cluster.map_shared_rank(dk_tile, source)[r * kLd + c];
        }
        const int64_t at = kv_offset + (key0 + r) * kv_row + c;
        p.dv[at] = dv_sum;
        p.dk[at] = dk_sum;
      }
    }
    cluster.sync();  // No block leaves while others read its shared memory.
  }
}

// Decoding (a few queries against a long cache): one block per (sequence,
// head, query). The 8 warps take contiguous eighths of the visible keys, each
// with its own online softmax (lanes own dimensions lane, lane + 32, ...;
// scores are warp sums), and the 8 partial results are merged in warp order.
// fp32 throughout.
template <int kD>
__global__ void __launch_bounds__(kThreads) DecodeKernel(Params p) {
  constexpr int kPer = kD / 32;
  __shared__ float decode_m[kWarps], decode_l[kWarps];
  __shared__ float decode_o[kWarps][kD];
  const int64_t row = blockIdx.x;  // (b * heads + h) * queries + i: lse's layout.
  const int64_t i = row % p.queries, bh = row / p.queries;
  const int h = static_cast<int>(bh % p.heads);
  const int64_t b = bh / p.heads;
  const int g = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t q_at = (b * p.queries + i) * q_row + h * p.head_dim;
  const float* k_base = p.k + b * p.key_stride * kv_row + g * p.head_dim;
  const float* v_base = p.v + b * p.key_stride * kv_row + g * p.head_dim;

  float qv[kPer], o[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int d = lane + 32 * e;
    qv[e] = d < p.head_dim ? p.q[q_at + d] : 0.0f;
    o[e] = 0.0f;
  }
  const int64_t position = p.query_offset + i;
  const int64_t first = p.window > 0 && position + 1 > p.window ? position + 1 - p.window : 0;
  const int64_t chunk = (position - first + kWarps) / kWarps;  // ceil(visible / 8)
  const int64_t begin = first + warp * chunk;
  const int64_t end = begin + chunk < position + 1 ? begin + chunk : position + 1;
  float m = -INFINITY, l = 0.0f;
#pragma unroll 4
  for (int64_t j = begin; j < end; ++j) {
    float dot = 0.0f, vv[kPer];
#pragma unroll
    for (int e = 0; e < kPer; ++e) {
      const int d = lane + 32 * e;
      const bool in = d < p.head_dim;
      dot = fmaf(qv[e], in ? __ldg(k_base + j * kv_row + d) : 0.0f, dot);
      vv[e] = in ? __ldg(v_base + j * kv_row + d) : 0.0f;
    }
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2) {
      dot += __shfl_xor_sync(0xffffffffu, dot, offset);
    }
    const float score = dot * p.scale;
    const float m_new = fmaxf(m, score);
    const float alpha = __expf(m - m_new), prob = __expf(score - m_new);
    l = l * alpha + prob;
#pragma unroll
    for (int e = 0; e < kPer; ++e) o[e] = fmaf(prob, vv[e], o[e] * alpha);
    m = m_new;
  }
  if (lane == 0) {
    decode_m[warp] = m;
    decode_l[warp] = l;
  }
#pragma unroll
  for (int e = 0; e < kPer; ++e) decode_o[warp][lane + 32 * e] = o[e];
  __syncthreads();

  // Warps without keys have m = -inf and weigh 0; the query's own key makes
  // the overall max finite.
  float max = -INFINITY;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) max = fmaxf(max, decode_m[w]);
  float weight[kWarps], sum = 0.0f;
#pragma unroll
  for (int w = 0; w < kWarps; ++w) {
    weight[w] = __expf(decode_m[w] - max);
    sum += decode_l[w] * weight[w];
  }
  for (int d = threadIdx.x; d < p.head_dim; d += kThreads) {
    float acc = 0.0f;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) acc = fmaf(decode_o[w][d], weight[w], acc);
    p.out_w[q_at + d] = acc / sum;
  }
  if (p.lse_w != nullptr && threadIdx.x == 0) p.lse_w[row] = max + logf(sum);
}

// Tile sizes per padded head dimension. Forward and dQ: 64 query rows (32 at
// head_dim 256, to keep two query-sized tiles in shared memory) against 32
// keys; dK/dV: 32 keys against 32 queries.
template <int kD>
struct Tiles {
  static constexpr int kForwardQ = 64;
  static constexpr int kForwardK = 32;
  static constexpr int kDqQ = kD >= 256 ? 32 : 64;
  static constexpr int kDqK = 32;
  static constexpr int kDkDvK = 32;
  static constexpr int kDkDvQ = 32;
};

template <int kD>
constexpr size_t ForwardSmem() {
  using T = Tiles<kD>;
  return sizeof(float) *
         ((T::kForwardQ + 2 * T::kForwardK) * RowStride<kD>() + T::kForwardQ * (T::kForwardK + 1));
}
template <int kD>
constexpr size_t DqSmem() {
  using T = Tiles<kD>;
  return sizeof(float) * (2 * (T::kDqQ + T::kDqK) * RowStride<kD>() + T::kDqQ * (T::kDqK + 1));
}
template <int kD>
constexpr size_t DkDvSmem() {
  using T = Tiles<kD>;
  return sizeof(float) * (2 * (T::kDkDvK + T::kDkDvQ) * RowStride<kD>() +
                          2 * T::kDkDvK * (T::kDkDvQ + 1) + 2 * T::kDkDvQ);
}

// The most dynamic shared memory a block may opt into on sm_90 (227 KB).
constexpr size_t kMaxSmem = 227 * 1024;
static_assert(ForwardSmem<256>() <= kMaxSmem && DqSmem<256>() <= kMaxSmem &&
                  DkDvSmem<256>() <= kMaxSmem,
              "tiles exceed shared memory");

template <typename Kernel>
absl::Status Launch(Kernel kernel, int64_t blocks, size_t smem, cudaStream_t stream,
                    const Params& params, const char* what) {
  return attention_tiles::LaunchTiles(kernel, blocks, kThreads, smem, stream, params, what);
}

template <int kD>
absl::Status Forward(const Params& params, cudaStream_t stream) {
  using T = Tiles<kD>;
  const int64_t q_tiles = (params.queries + T::kForwardQ - 1) / T::kForwardQ;
  return Launch(ForwardKernel<kD, T::kForwardQ, T::kForwardK>,
                q_tiles * params.batch * params.heads, ForwardSmem<kD>(), stream, params,
                "flash attention forward");
}

template <int kD>
absl::Status Backward(const Params& params, cudaStream_t stream) {
  using T = Tiles<kD>;
  const int64_t q_tiles = (params.queries + T::kDqQ - 1) / T::kDqQ;
  const int64_t k_tiles = (params.keys + T::kDkDvK - 1) / T::kDkDvK;
  if (absl::Status status =
          Launch(DkDvKernel<kD, T::kDkDvK, T::kDkDvQ>, k_tiles * params.batch * params.kv_heads,
                 DkDvSmem<kD>(), stream, params, "flash attention dK dV");
      !status.ok()) {
    return status;
  }
  return Launch(DqKernel<kD, T::kDqQ, T::kDqK>, q_tiles * params.batch * params.heads, DqSmem<kD>(),
                stream, params, "flash attention dQ");
}

template <int kD>
constexpr size_t ForwardTcSmem() {
  return sizeof(float) * ((64 + 4 * 32) * TcStride<kD>() + 64 * 36 + 256 + 3 * 64);
}
template <int kD>
constexpr int DqTcRows() {
  return kD >= 256 ? 32 : 64;
}
template <int kD>
constexpr size_t DqTcSmem() {
  constexpr int kBq = DqTcRows<kD>();
  return sizeof(float) * ((2 * kBq + 4 * 32) * TcStride<kD>() + 2 * kBq * 36 + 2 * kBq);
}
template <int kD>
constexpr size_t DkDvTcSmem() {
  return sizeof(float) * ((2 * 32 + 4 * 32) * TcStride<kD>() + 2 * 32 * 36 + 4 * 32);
}
static_assert(ForwardTcSmem<256>() <= kMaxSmem && DqTcSmem<256>() <= kMaxSmem &&
                  DkDvTcSmem<256>() <= kMaxSmem,
              "tensor-core tiles exceed shared memory");

// Launches `blocks` blocks in clusters of `cluster` consecutive blocks.
template <typename Kernel>
absl::Status LaunchClusters(Kernel kernel, int64_t blocks, int cluster, size_t smem,
                            cudaStream_t stream, const Params& params, const char* what) {
  if (blocks > INT_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": ", blocks, " blocks is too many"));
  }
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(static_cast<unsigned>(blocks));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = smem;
  config.stream = stream;
  cudaLaunchAttribute attribute[1];
  attribute[0].id = cudaLaunchAttributeClusterDimension;
  attribute[0].val.clusterDim.x = cluster;
  attribute[0].val.clusterDim.y = 1;
  attribute[0].val.clusterDim.z = 1;
  config.attrs = attribute;
  config.numAttrs = 1;
  return CudaStatus(cudaLaunchKernelEx(&config, kernel, params), what);
}

// The SM count of the current device.
absl::StatusOr<int> SmCount() {
  int device = 0, sms = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  MAXIMUS_CUDA_RETURN_IF_ERROR(
      cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  return sms;
}

// Launches kernel<1> over `units` blocks, or kernel<2> / kernel<4> over
// clusters of 2 / 4 blocks per unit when units fall short of the SM count (and
// a cluster can be scheduled).
template <typename Kernel>
absl::Status LaunchSplit(Kernel one, Kernel two, Kernel four, int64_t units, size_t smem,
                         cudaStream_t stream, const Params& params, const char* what) {
  const absl::StatusOr<int> sms = SmCount();
  if (!sms.ok()) return sms.status();
  absl::Status status = absl::UnavailableError("no clusters");
  if (units < *sms && 2 * units >= *sms) {
    status = LaunchClusters(two, 2 * units, 2, smem, stream, params, what);
  } else if (units < *sms) {
    status = LaunchClusters(four, 4 * units, 4, smem, stream, params, what);
  }
  if (!status.ok()) {
    // No clusters wanted, or none could be scheduled: one block per unit.
    cudaGetLastError();  // A refused launch leaves an error that is not sticky.
    status = Launch(one, units, smem, stream, params, what);
  }
  return status;
}

template <int kD>
absl::Status ForwardTc(const Params& params, cudaStream_t stream) {
  const int64_t q_tiles = (params.queries + 63) / 64;
  return LaunchSplit(ForwardTcKernel<kD, 1>, ForwardTcKernel<kD, 2>, ForwardTcKernel<kD, 4>,
                     q_tiles * params.batch * params.heads, ForwardTcSmem<kD>(), stream, params,
                     "flash attention forward (TF32)");
}

template <int kD>
absl::Status BackwardTc(const Params& params, cudaStream_t stream) {
  constexpr int kBq = DqTcRows<kD>();
  const int64_t q_tiles = (params.queries + kBq - 1) / kBq;
  const int64_t k_tiles = (params.keys + 31) / 32;
  // dK/dV blocks (one per SM at head_dim 256) are few when batch · kv_heads
  // · keys / 32 is below the SM count: then each is split over a cluster.
  const absl::Status status =
      LaunchSplit(DkDvTcKernel<kD, 1>, DkDvTcKernel<kD, 2>, DkDvTcKernel<kD, 4>,
                  k_tiles * params.batch * params.kv_heads, DkDvTcSmem<kD>(), stream, params,
                  "flash attention dK dV (TF32)");
  if (!status.ok()) return status;
  return Launch(DqTcKernel<kD, kBq>, q_tiles * params.batch * params.heads, DqTcSmem<kD>(), stream,
                params, "flash attention dQ (TF32)");
}

// Queries per sequence up to which the forward runs DecodeKernel.
constexpr int64_t kDecodeQueries = 4;

template <int kD>
absl::Status Decode(const Params& params, cudaStream_t stream) {
  return Launch(DecodeKernel<kD>, params.batch * params.heads * params.queries, 0, stream, params,
                "flash attention decoding");
}

bool UseTensorCores(const AttentionShape& shape, FlashAttentionMath math) {
  return math == FlashAttentionMath::kTf32 ||
         (math == FlashAttentionMath::kAuto && shape.head_dim >= 32);
}

absl::Status CheckShape(const AttentionShape& shape) {
  if (absl::Status status = ValidateAttentionShape(shape); !status.ok()) return status;
  if (shape.head_dim > 256) {
    return absl::InvalidArgumentError(
        absl::StrCat("flash attention supports head_dim up to 256, not ", shape.head_dim));
  }
  if (shape.heads > INT_MAX / 2 || shape.kv_heads > INT_MAX / 2) {
    return absl::InvalidArgumentError("flash attention: too many heads");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status FlashAttentionForwardCuda(const AttentionShape& shape, const float* q, const float* k,
                                       const float* v, float* out, float* lse, cudaStream_t stream,
                                       FlashAttentionMath math) {
  if (absl::Status status = CheckShape(shape); !status.ok()) return status;
  if (shape.batch == 0 || shape.queries == 0) return absl::OkStatus();
  Params p = ParamsOf<Params>(shape);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out_w = out;
  p.lse_w = lse;
  p.vec4 = shape.head_dim % 4 == 0 && Aligned16(q) && Aligned16(k) && Aligned16(v);
  if (shape.queries <= kDecodeQueries) {
    if (shape.head_dim <= 32) return Decode<32>(p, stream);
    if (shape.head_dim <= 64) return Decode<64>(p, stream);
    if (shape.head_dim <= 128) return Decode<128>(p, stream);
    return Decode<256>(p, stream);
  }
  if (UseTensorCores(shape, math)) {
    if (shape.head_dim <= 32) return ForwardTc<32>(p, stream);
    if (shape.head_dim <= 64) return ForwardTc<64>(p, stream);
    if (shape.head_dim <= 128) return ForwardTc<128>(p, stream);
    return ForwardTc<256>(p, stream);
  }
  if (shape.head_dim <= 32) return Forward<32>(p, stream);
  if (shape.head_dim <= 64) return Forward<64>(p, stream);
  if (shape.head_dim <= 128) return Forward<128>(p, stream);
  return Forward<256>(p, stream);
}

absl::Status FlashAttentionDeltaCuda(const AttentionShape& shape, const float* out,
                                     const float* dout, float* delta, cudaStream_t stream) {
  if (absl::Status status = CheckShape(shape); !status.ok()) return status;
  const int64_t rows = shape.batch * shape.heads * shape.queries;
  if (rows == 0) return absl::OkStatus();
  constexpr int kRowsPerBlock = kThreads / 32;
  const int64_t blocks = (rows + kRowsPerBlock - 1) / kRowsPerBlock;
  if (blocks > INT_MAX) return absl::InvalidArgumentError("flash attention: too many rows");
  Params p = ParamsOf<Params>(shape);
  p.out = out;
  p.dout = dout;
  p.delta = delta;
  DeltaKernel<<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(p);
  return CudaStatus(cudaGetLastError(), "flash attention delta");
}

absl::Status FlashAttentionBackwardCuda(const AttentionShape& shape, const float* q, const float* k,
                                        const float* v, const float* out, const float* lse,
                                        const float* dout, float* dq, float* dk, float* dv,
                                        float* delta_workspace, cudaStream_t stream,
                                        FlashAttentionMath math) {
  if (absl::Status status = CheckShape(shape); !status.ok()) return status;
  if (shape.query_offset != 0) {
    return absl::InvalidArgumentError("attention backward needs query_offset 0");
  }
  if (shape.batch == 0 || shape.queries == 0) return absl::OkStatus();
  Params p = ParamsOf<Params>(shape);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  p.dout = dout;
  p.delta = delta_workspace;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  p.vec4 =
      shape.head_dim % 4 == 0 && Aligned16(q) && Aligned16(k) && Aligned16(v) && Aligned16(dout);
  if (absl::Status status = FlashAttentionDeltaCuda(shape, out, dout, delta_workspace, stream);
      !status.ok()) {
    return status;
  }
  if (UseTensorCores(shape, math)) {
    if (shape.head_dim <= 32) return BackwardTc<32>(p, stream);
    if (shape.head_dim <= 64) return BackwardTc<64>(p, stream);
    if (shape.head_dim <= 128) return BackwardTc<128>(p, stream);
    return BackwardTc<256>(p, stream);
  }
  if (shape.head_dim <= 32) return Backward<32>(p, stream);
  if (shape.head_dim <= 64) return Backward<64>(p, stream);
  if (shape.head_dim <= 128) return Backward<128>(p, stream);
  return Backward<256>(p, stream);
}

}  // namespace maximus::kernels
