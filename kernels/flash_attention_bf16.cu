#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>
#include <initializer_list>

#include "absl/strings/str_cat.h"
#include "kernels/attention.h"
#include "kernels/attention_tiles.cuh"
#include "kernels/cuda_status.h"
#include "kernels/flash_attention_bf16_cuda.h"

namespace maximus::kernels {
namespace {

using attention_tiles::Aligned16;
using attention_tiles::CpAsyncCommit;
using attention_tiles::CpAsyncWait;
using attention_tiles::KeyTileRange;
using attention_tiles::LaunchTiles;
using attention_tiles::ParamsOf;
using attention_tiles::Visible;

// The kernels (kD: head_dim rounded up to 64, 128 or 256):
//   ForwardKernel: 4 warps, 64 queries (16 per warp) against 64-key tiles;
//     K and V have a buffer each, so V loads while Q Kᵀ runs and the next K
//     while P V runs (101 KB at kD 256: two blocks per SM).
//   DkDvKernel: 8 warps, 64 keys against 64-query steps (Q, dO and their
//     statistics double-buffered, 217 KB at kD 256). Sᵀ and dPᵀ go through
//     shared memory as bf16 Pᵀ and dSᵀ, since a warp's dV and dK rows need
//     every query of the step.
//   DqKernel: 8 warps, 128 queries against 32-key tiles (K and V
//     double-buffered, 198 KB at kD 256); dS stays in registers.
// Products are mma.sync m16n8k16 (bf16 in, fp32 accumulate). Fragment
// layouts (g = lane / 4, t = lane % 4): A registers hold (row g, columns
// 2t, 2t+1), (g + 8, 2t), (g, 2t + 8), (g + 8, 2t + 8); B registers hold
// (rows 2t, 2t+1, column g), (2t + 8, g); the accumulator holds (g, 2t),
// (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). Two adjacent 8-column
// accumulators are thus one 16-column A operand, which keeps probabilities
// in registers between the two products of the forward and of dQ.
using Bits = uint16_t;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Params {
  const Bits* q;
  const Bits* k;
  const Bits* v;
  const Bits* dout;
  const float* lse;
  const float* delta;
  float* out;
  float* lse_out;
  float* dq;
  float* dk;
  float* dv;
  int64_t batch, queries, query_offset, key_stride, keys;
  int heads, kv_heads, head_dim;
  int64_t window;
  float scale;
};

// Shared-memory rows are kD + 8 elements apart: 16 bytes more than a multiple
// of 128, so the 8 rows one ldmatrix phase reads fall in distinct banks.
template <int kD>
constexpr int Ld() {
  return kD + 8;
}

__device__ __forceinline__ uint32_t SmemAddress(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// A 16-byte global-to-shared copy; zero-fills when !valid (src must still be
// a valid address).
__device__ __forceinline__ void CpAsync16(Bits* dst, const Bits* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(SmemAddress(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}

// Starts copying rows [row0, row0 + kRows) of a head_dim-wide slice into a
// tile (zeros from `rows` and from head_dim on).
template <int kD, int kRows, int kThreads>
__device__ __forceinline__ void LoadTile(Bits* tile, const Bits* __restrict__ src,
                                         int64_t row_stride, int64_t row0, int64_t rows,
                                         int head_dim) {
  constexpr int kChunks = kD / 8;
  for (int idx = threadIdx.x; idx < kRows * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    const int64_t row = row0 + r;
    const bool valid = row < rows && c < head_dim;
    CpAsync16(tile + r * Ld<kD>() + c, valid ? src + row * row_stride + c : src, valid);
  }
}

// Starts copying src[row0, row0 + kRows) (zeros from `rows` on).
template <int kRows, int kThreads>
__device__ __forceinline__ void LoadRows(float* dst, const float* __restrict__ src, int64_t row0,
                                         int64_t rows) {
  for (int r = threadIdx.x; r < kRows; r += kThreads) {
    const bool valid = row0 + r < rows;
    const unsigned dst_addr = SmemAddress(dst + r);
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst_addr),
                 "l"(valid ? src + row0 + r : src), "r"(valid ? 4 : 0));
  }
}

__device__ __forceinline__ void LdMatrix(uint32_t (&r)[4], const Bits* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddress(p)));
}
__device__ __forceinline__ void LdMatrixTrans(uint32_t (&r)[4], const Bits* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(SmemAddress(p)));
}

// The A operand (16 × 16) at rows row0.., columns col0.. of a row-major tile.
template <int kLd>
__device__ __forceinline__ void LoadA(uint32_t (&a)[4], const Bits* tile, int row0, int col0,
                                      int lane) {
  LdMatrix(a, tile + (row0 + (lane & 15)) * kLd + col0 + (lane >> 4) * 8);
}
// B operands (16 × 8) of output columns n0.. and n0 + 8.. (b[0..1], b[2..3])
// over k0..k0 + 15, from a tile that holds B transposed: row n, column k (K
// for Q Kᵀ).
template <int kLd>
__device__ __forceinline__ void LoadBTransposed(uint32_t (&b)[4], const Bits* tile, int n0, int k0,
                                                int lane) {
  LdMatrix(b, tile + (n0 + (lane & 7) + (lane >> 4) * 8) * kLd + k0 + ((lane >> 3) & 1) * 8);
}
// The same from a tile that holds B as is: row k, column n (V for P V).
template <int kLd>
__device__ __forceinline__ void LoadB(uint32_t (&b)[4], const Bits* tile, int k0, int n0,
                                      int lane) {
  LdMatrixTrans(b, tile + (k0 + (lane & 7) + ((lane >> 3) & 1) * 8) * kLd + n0 + (lane >> 4) * 8);
}

// c (16 × 8, fp32) += a (16 × 16) · b (16 × 8), bf16 operands.
__device__ __forceinline__ void Mma(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, "
      "{%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats as bf16 (round to nearest even), `lo` in the low half.
__device__ __forceinline__ uint32_t Pack(float lo, float hi) {
  const __nv_bfloat162 pair = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&pair);
}

// The A operand of columns 16kk.. from accumulators s[2kk] and s[2kk + 1].
template <int kN>
__device__ __forceinline__ void AccumulatorsAsA(uint32_t (&a)[4], const float (&s)[kN][4],
                                                int kk) {
  a[0] = Pack(s[2 * kk][0], s[2 * kk][1]);
  a[1] = Pack(s[2 * kk][2], s[2 * kk][3]);
  a[2] = Pack(s[2 * kk + 1][0], s[2 * kk + 1][1]);
  a[3] = Pack(s[2 * kk + 1][2], s[2 * kk + 1][3]);
}

// Max and sum over the 4 lanes (a quad) that share an accumulator row.
__device__ __forceinline__ float QuadMax(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float QuadSum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}

// Stores an fp32 accumulator fragment's two rows (row_base + g, + 8) at
// columns col0 + 2t: rows below `rows`, columns below `cols`.
template <int kTiles>
__device__ __forceinline__ void StoreRows(float* base, int64_t row_stride, int64_t row_base,
                                          int64_t rows, int col0, int cols,
                                          const float (&acc)[kTiles][4], const float (&factor)[2],
                                          int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int64_t row = row_base + g + 8 * r;
    if (row >= rows) continue;
#pragma unroll
    for (int n = 0; n < kTiles; ++n) {
      const int col = col0 + 8 * n + 2 * t;
      if (col < cols) {
        *reinterpret_cast<float2*>(base + row * row_stride + col) =
            make_float2(acc[n][2 * r] * factor[r], acc[n][2 * r + 1] * factor[r]);
      }
    }
  }
}

// Forward: one block per (query tile, sequence, head), longest query tiles
// first. Online softmax in the log2 domain, per accumulator row; a row's
// running sum is kept per lane and summed over the quad at the end.
template <int kD>
__global__ void __launch_bounds__(128) ForwardKernel(Params p) {
  constexpr int kThreads = 128, kBq = 64, kBk = 64, kLd = Ld<kD>();
  constexpr int kN = kBk / 8, kO = kD / 8;
  extern __shared__ __align__(128) Bits smem[];
  Bits* q_tile = smem;               // [kBq][kLd]
  Bits* k_tile = q_tile + kBq * kLd;  // [kBk][kLd]
  Bits* v_tile = k_tile + kBk * kLd;  // [kBk][kLd]

  const int64_t q_tiles = (p.queries + kBq - 1) / kBq;
  const int64_t heads_total = p.batch * p.heads;
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads_total;
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads_total;
  const int64_t b = bh / p.heads;
  const int h = static_cast<int>(bh % p.heads);
  const int group = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
  const Bits* k_base = p.k + b * p.key_stride * kv_row + group * p.head_dim;
  const Bits* v_base = p.v + b * p.key_stride * kv_row + group * p.head_dim;

  const int64_t row0 = qt * kBq;
  const int64_t last_row = (row0 + kBq < p.queries ? row0 + kBq : p.queries) - 1;
  int64_t kt_begin, kt_end;
  KeyTileRange(p.query_offset + row0, p.query_offset + last_row, p.window, kBk, &kt_begin, &kt_end);
  LoadTile<kD, kBq, kThreads>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim);
  LoadTile<kD, kBk, kThreads>(k_tile, k_base, kv_row, kt_begin * kBk, p.keys, p.head_dim);
  CpAsyncCommit();

  float o[kO][4];
#pragma unroll
  for (int n = 0; n < kO; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f};
  const int64_t position0 = p.query_offset + row0 + warp * 16 + g;
  const float scale_log2 = p.scale * kLog2e;

  for (int64_t kt = kt_begin; kt <= kt_end; ++kt) {
    CpAsyncWait<0>();
    __syncthreads();  // K has landed; every warp is done with the previous V.
    LoadTile<kD, kBk, kThreads>(v_tile, v_base, kv_row, kt * kBk, p.keys, p.head_dim);
    CpAsyncCommit();

    float s[kN][4];
#pragma unroll
    for (int n = 0; n < kN; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int k0 = 0; k0 < kD; k0 += 16) {
      uint32_t a[4];
      LoadA<kLd>(a, q_tile, warp * 16, k0, lane);
#pragma unroll
      for (int j = 0; j < kN / 2; ++j) {
        uint32_t bk[4];
        LoadBTransposed<kLd>(bk, k_tile, j * 16, k0, lane);
        Mma(s[2 * j], a, bk[0], bk[1]);
        Mma(s[2 * j + 1], a, bk[2], bk[3]);
      }
    }

    const int64_t key0 = kt * kBk;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t position = position0 + 8 * r;
      float row_max = -INFINITY;
#pragma unroll
      for (int n = 0; n < kN; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t key = key0 + 8 * n + 2 * t + e;
          const float x =
              Visible(position, key, p.window) ? s[n][2 * r + e] * scale_log2 : -INFINITY;
          s[n][2 * r + e] = x;
          row_max = fmaxf(row_max, x);
        }
      }
      const float m_new = fmaxf(m[r], QuadMax(row_max));
      const float m_use = m_new == -INFINITY ? 0.0f : m_new;
      const float alpha = exp2f(m[r] - m_use);
      float sum = 0.0f;
#pragma unroll
      for (int n = 0; n < kN; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const float prob = exp2f(s[n][2 * r + e] - m_use);
          s[n][2 * r + e] = prob;
          sum += prob;
        }
      }
      l[r] = l[r] * alpha + sum;
      m[r] = m_new;
#pragma unroll
      for (int n = 0; n < kO; ++n) {
        o[n][2 * r] *= alpha;
        o[n][2 * r + 1] *= alpha;
      }
    }

    CpAsyncWait<0>();
    __syncthreads();  // V has landed; every warp is done with K.
    if (kt < kt_end) {
      LoadTile<kD, kBk, kThreads>(k_tile, k_base, kv_row, (kt + 1) * kBk, p.keys, p.head_dim);
      CpAsyncCommit();
    }
#pragma unroll
    for (int kk = 0; kk < kBk / 16; ++kk) {
      uint32_t a[4];
      AccumulatorsAsA<kN>(a, s, kk);
#pragma unroll
      for (int j = 0; j < kO / 2; ++j) {
        uint32_t bv[4];
        LoadB<kLd>(bv, v_tile, kk * 16, j * 16, lane);
        Mma(o[2 * j], a, bv[0], bv[1]);
        Mma(o[2 * j + 1], a, bv[2], bv[3]);
      }
    }
  }
  CpAsyncWait<0>();

  float inverse[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    l[r] = QuadSum(l[r]);
    inverse[r] = l[r] > 0.0f ? 1.0f / l[r] : 0.0f;
  }
  StoreRows<kO>(p.out + head_offset, q_row, row0 + warp * 16, p.queries, 0, p.head_dim, o, inverse,
                lane);
  if (p.lse_out != nullptr && t == 0) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int64_t row = row0 + warp * 16 + g + 8 * r;
      if (row < p.queries) {
        p.lse_out[(b * p.heads + h) * p.queries + row] = (m[r] + log2f(l[r])) * kLn2;
      }
    }
  }
}

// dK and dV: one block per (key tile, sequence, kv head), over the steps
// (head of the group, query tile), query tiles innermost. Warp w computes
// Sᵀ and dPᵀ for keys 16(w % 4).. and queries 32(w / 4).., then owns dV and dK
// of keys 16(w % 4).. and dimensions (w / 4)·kD/2...
template <int kD>
__global__ void __launch_bounds__(256) DkDvKernel(Params p) {
  constexpr int kThreads = 256, kBk = 64, kBq = 64, kLd = Ld<kD>(), kPld = kBq + 8;
  constexpr int kHalf = kD / 2, kG = kHalf / 8;
  extern __shared__ __align__(128) Bits smem[];
  Bits* k_tile = smem;                             // [kBk][kLd]
  Bits* v_tile = k_tile + kBk * kLd;               // [kBk][kLd]
  Bits* qdo_tiles = v_tile + kBk * kLd;            // 2 buffers of Q, dO [kBq][kLd]
  Bits* pt_tile = qdo_tiles + 4 * kBq * kLd;       // [kBk][kPld]: Pᵀ
  Bits* dst_tile = pt_tile + kBk * kPld;           // [kBk][kPld]: dSᵀ
  float* stat_tiles = reinterpret_cast<float*>(dst_tile + kBk * kPld);  // 2 × lse, delta [kBq]

  const int64_t groups_total = p.batch * p.kv_heads;
  const int64_t kt = static_cast<int64_t>(blockIdx.x) / groups_total;
  const int64_t bg = static_cast<int64_t>(blockIdx.x) % groups_total;
  const int64_t b = bg / p.kv_heads;
  const int group_index = static_cast<int>(bg % p.kv_heads);
  const int group = p.heads / p.kv_heads;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int key_rows = (warp % 4) * 16, half = warp / 4;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t kv_offset = b * p.key_stride * kv_row + group_index * p.head_dim;

  const int64_t key0 = kt * kBk;
  const int64_t last_key = (key0 + kBk < p.keys ? key0 + kBk : p.keys) - 1;
  const int64_t last_query = p.window > 0 && last_key + p.window - 1 < p.queries - 1
                                 ? last_key + p.window - 1
                                 : p.queries - 1;
  const int64_t qt_begin = key0 / kBq, q_steps = last_query / kBq - qt_begin + 1;
  const int64_t steps = group * q_steps;
  auto load_step = [&](int64_t step, int buf) {
    const int h = group_index * group + static_cast<int>(step / q_steps);
    const int64_t row0 = (qt_begin + step % q_steps) * kBq;
    const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
    const int64_t stat_offset = (b * p.heads + h) * p.queries;
    Bits* q_tile = qdo_tiles + 2 * buf * kBq * kLd;
    float* stats = stat_tiles + 2 * buf * kBq;
    LoadTile<kD, kBq, kThreads>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim);
    LoadTile<kD, kBq, kThreads>(q_tile + kBq * kLd, p.dout + head_offset, q_row, row0, p.queries,
                                p.head_dim);
    LoadRows<kBq, kThreads>(stats, p.lse + stat_offset, row0, p.queries);
    LoadRows<kBq, kThreads>(stats + kBq, p.delta + stat_offset, row0, p.queries);
  };
  LoadTile<kD, kBk, kThreads>(k_tile, p.k + kv_offset, kv_row, key0, p.keys, p.head_dim);
  LoadTile<kD, kBk, kThreads>(v_tile, p.v + kv_offset, kv_row, key0, p.keys, p.head_dim);
  if (steps > 0) load_step(0, 0);
  CpAsyncCommit();

  float dv[kG][4], dk[kG][4];
#pragma unroll
  for (int n = 0; n < kG; ++n) {
    dv[n][0] = dv[n][1] = dv[n][2] = dv[n][3] = 0.0f;
    dk[n][0] = dk[n][1] = dk[n][2] = dk[n][3] = 0.0f;
  }
  const float scale_log2 = p.scale * kLog2e;

  for (int64_t step = 0; step < steps; ++step) {
    const int buf = static_cast<int>(step & 1);
    const int64_t row0 = (qt_begin + step % q_steps) * kBq;
    const Bits* q_tile = qdo_tiles + 2 * buf * kBq * kLd;
    const Bits* do_tile = q_tile + kBq * kLd;
    const float* lse_tile = stat_tiles + 2 * buf * kBq;
    const float* delta_tile = lse_tile + kBq;
    __syncthreads();  // The previous step's readers of the other buffer, Pᵀ and dSᵀ are done.
    if (step + 1 < steps) {
      load_step(step + 1, buf ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // This step's tiles have landed for every thread.

    float st[4][4], dpt[4][4];
#pragma unroll
    for (int n = 0; n < 4; ++n) {
      st[n][0] = st[n][1] = st[n][2] = st[n][3] = 0.0f;
      dpt[n][0] = dpt[n][1] = dpt[n][2] = dpt[n][3] = 0.0f;
    }
#pragma unroll 4
    for (int k0 = 0; k0 < kD; k0 += 16) {
      uint32_t ak[4], av[4];
      LoadA<kLd>(ak, k_tile, key_rows, k0, lane);
      LoadA<kLd>(av, v_tile, key_rows, k0, lane);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        uint32_t bq[4], bdo[4];
        LoadBTransposed<kLd>(bq, q_tile, half * 32 + j * 16, k0, lane);
        Mma(st[2 * j], ak, bq[0], bq[1]);
        Mma(st[2 * j + 1], ak, bq[2], bq[3]);
        LoadBTransposed<kLd>(bdo, do_tile, half * 32 + j * 16, k0, lane);
        Mma(dpt[2 * j], av, bdo[0], bdo[1]);
        Mma(dpt[2 * j + 1], av, bdo[2], bdo[3]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int key_in_tile = key_rows + g + 8 * r;
      const int64_t key = key0 + key_in_tile;
#pragma unroll
      for (int n = 0; n < 4; ++n) {
        float prob[2], ds[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int query_in_tile = half * 32 + 8 * n + 2 * t + e;
          const int64_t i = row0 + query_in_tile;
          prob[e] = 0.0f;
          ds[e] = 0.0f;
          if (key < p.keys && i < p.queries && Visible(i, key, p.window)) {
            prob[e] = exp2f(st[n][2 * r + e] * scale_log2 - lse_tile[query_in_tile] * kLog2e);
            ds[e] = p.scale * prob[e] * (dpt[n][2 * r + e] - delta_tile[query_in_tile]);
          }
        }
        const int at = key_in_tile * kPld + half * 32 + 8 * n + 2 * t;
        *reinterpret_cast<uint32_t*>(pt_tile + at) = Pack(prob[0], prob[1]);
        *reinterpret_cast<uint32_t*>(dst_tile + at) = Pack(ds[0], ds[1]);
      }
    }
    __syncthreads();
    // dV += Pᵀ dO, dK += dSᵀ Q.
#pragma unroll
    for (int kk = 0; kk < kBq / 16; ++kk) {
      uint32_t ap[4], ads[4];
      LoadA<kPld>(ap, pt_tile, key_rows, kk * 16, lane);
      LoadA<kPld>(ads, dst_tile, key_rows, kk * 16, lane);
#pragma unroll
      for (int j = 0; j < kG / 2; ++j) {
        uint32_t bdo[4], bq[4];
        LoadB<kLd>(bdo, do_tile, kk * 16, half * kHalf + j * 16, lane);
        Mma(dv[2 * j], ap, bdo[0], bdo[1]);
        Mma(dv[2 * j + 1], ap, bdo[2], bdo[3]);
        LoadB<kLd>(bq, q_tile, kk * 16, half * kHalf + j * 16, lane);
        Mma(dk[2 * j], ads, bq[0], bq[1]);
        Mma(dk[2 * j + 1], ads, bq[2], bq[3]);
      }
    }
  }
  CpAsyncWait<0>();  // Nothing in flight, also in a block without steps.

  const float one[2] = {1.0f, 1.0f};
  StoreRows<kG>(p.dv + kv_offset, kv_row, key0 + key_rows, p.keys, half * kHalf, p.head_dim, dv,
                one, lane);
  StoreRows<kG>(p.dk + kv_offset, kv_row, key0 + key_rows, p.keys, half * kHalf, p.head_dim, dk,
                one, lane);
}

// dQ: one block per (query tile, sequence, head), longest first. For every
// visible key tile, P = exp(scale·QKᵀ − lse), dS = scale·P ⊙ (dO Vᵀ − delta),
// dQ += dS K, with dS in registers.
template <int kD>
__global__ void __launch_bounds__(256) DqKernel(Params p) {
  constexpr int kThreads = 256, kBq = 128, kBk = 32, kLd = Ld<kD>();
  constexpr int kN = kBk / 8, kO = kD / 8;
  extern __shared__ __align__(128) Bits smem[];
  Bits* q_tile = smem;                  // [kBq][kLd]
  Bits* do_tile = q_tile + kBq * kLd;   // [kBq][kLd]
  Bits* kv_tiles = do_tile + kBq * kLd;  // 2 buffers of K, V [kBk][kLd]

  const int64_t q_tiles = (p.queries + kBq - 1) / kBq;
  const int64_t heads_total = p.batch * p.heads;
  const int64_t qt = q_tiles - 1 - static_cast<int64_t>(blockIdx.x) / heads_total;
  const int64_t bh = static_cast<int64_t>(blockIdx.x) % heads_total;
  const int64_t b = bh / p.heads;
  const int h = static_cast<int>(bh % p.heads);
  const int group = h / (p.heads / p.kv_heads);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int64_t q_row = static_cast<int64_t>(p.heads) * p.head_dim;
  const int64_t kv_row = static_cast<int64_t>(p.kv_heads) * p.head_dim;
  const int64_t head_offset = b * p.queries * q_row + h * p.head_dim;
  const int64_t stat_offset = (b * p.heads + h) * p.queries;
  const Bits* k_base = p.k + b * p.key_stride * kv_row + group * p.head_dim;
  const Bits* v_base = p.v + b * p.key_stride * kv_row + group * p.head_dim;

  const int64_t row0 = qt * kBq;
  const int64_t last_row = (row0 + kBq < p.queries ? row0 + kBq : p.queries) - 1;
  int64_t kt_begin, kt_end;
  KeyTileRange(row0, last_row, p.window, kBk, &kt_begin, &kt_end);
  auto load_kv = [&](int64_t kt, int buf) {
    Bits* k_tile = kv_tiles + 2 * buf * kBk * kLd;
    LoadTile<kD, kBk, kThreads>(k_tile, k_base, kv_row, kt * kBk, p.keys, p.head_dim);
    LoadTile<kD, kBk, kThreads>(k_tile + kBk * kLd, v_base, kv_row, kt * kBk, p.keys, p.head_dim);
  };
  LoadTile<kD, kBq, kThreads>(q_tile, p.q + head_offset, q_row, row0, p.queries, p.head_dim);
  LoadTile<kD, kBq, kThreads>(do_tile, p.dout + head_offset, q_row, row0, p.queries, p.head_dim);
  load_kv(kt_begin, 0);
  CpAsyncCommit();

  // This lane's two rows: log2-domain lse and delta.
  int64_t rows[2];
  float lse2[2], delta[2];
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    rows[r] = row0 + warp * 16 + g + 8 * r;
    const bool valid = rows[r] < p.queries;
    lse2[r] = valid ? p.lse[stat_offset + rows[r]] * kLog2e : 0.0f;
    delta[r] = valid ? p.delta[stat_offset + rows[r]] : 0.0f;
  }
  float dq[kO][4];
#pragma unroll
  for (int n = 0; n < kO; ++n) dq[n][0] = dq[n][1] = dq[n][2] = dq[n][3] = 0.0f;
  const float scale_log2 = p.scale * kLog2e;

  for (int64_t kt = kt_begin; kt <= kt_end; ++kt) {
    const int buf = static_cast<int>((kt - kt_begin) & 1);
    const Bits* k_tile = kv_tiles + 2 * buf * kBk * kLd;
    const Bits* v_tile = k_tile + kBk * kLd;
    __syncthreads();  // The previous step's readers of the other buffer are done.
    if (kt < kt_end) {
      load_kv(kt + 1, buf ^ 1);
      CpAsyncCommit();
      CpAsyncWait<1>();
    } else {
      CpAsyncWait<0>();
    }
    __syncthreads();  // This step's tiles have landed for every thread.

    float s[kN][4], dp[kN][4];
#pragma unroll
    for (int n = 0; n < kN; ++n) {
      s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
      dp[n][0] = dp[n][1] = dp[n][2] = dp[n][3] = 0.0f;
    }
#pragma unroll 4
    for (int k0 = 0; k0 < kD; k0 += 16) {
      uint32_t aq[4], ado[4];
      LoadA<kLd>(aq, q_tile, warp * 16, k0, lane);
      LoadA<kLd>(ado, do_tile, warp * 16, k0, lane);
#pragma unroll
      for (int j = 0; j < kN / 2; ++j) {
        uint32_t bk[4], bv[4];
        LoadBTransposed<kLd>(bk, k_tile, j * 16, k0, lane);
        Mma(s[2 * j], aq, bk[0], bk[1]);
        Mma(s[2 * j + 1], aq, bk[2], bk[3]);
        LoadBTransposed<kLd>(bv, v_tile, j * 16, k0, lane);
        Mma(dp[2 * j], ado, bv[0], bv[1]);
        Mma(dp[2 * j + 1], ado, bv[2], bv[3]);
      }
    }
    const int64_t key0 = kt * kBk;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int n = 0; n < kN; ++n) {
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int64_t key = key0 + 8 * n + 2 * t + e;
          float ds = 0.0f;
          if (rows[r] < p.queries && Visible(rows[r], key, p.window)) {
            const float prob = exp2f(s[n][2 * r + e] * scale_log2 - lse2[r]);
            ds = p.scale * prob * (dp[n][2 * r + e] - delta[r]);
          }
          s[n][2 * r + e] = ds;
        }
      }
    }
#pragma unroll
    for (int kk = 0; kk < kBk / 16; ++kk) {
      uint32_t a[4];
      AccumulatorsAsA<kN>(a, s, kk);
#pragma unroll
      for (int j = 0; j < kO / 2; ++j) {
        uint32_t bk[4];
        LoadB<kLd>(bk, k_tile, kk * 16, j * 16, lane);
        Mma(dq[2 * j], a, bk[0], bk[1]);
        Mma(dq[2 * j + 1], a, bk[2], bk[3]);
      }
    }
  }
  CpAsyncWait<0>();

  const float one[2] = {1.0f, 1.0f};
  StoreRows<kO>(p.dq + head_offset, q_row, row0 + warp * 16, p.queries, 0, p.head_dim, dq, one,
                lane);
}

template <int kD>
constexpr size_t ForwardSmem() {
  return sizeof(Bits) * 3 * 64 * Ld<kD>();
}
template <int kD>
constexpr size_t DkDvSmem() {
  return sizeof(Bits) * (6 * 64 * Ld<kD>() + 2 * 64 * 72) + sizeof(float) * 4 * 64;
}
template <int kD>
constexpr size_t DqSmem() {
  return sizeof(Bits) * (2 * 128 + 4 * 32) * Ld<kD>();
}
constexpr size_t kMaxSmem = 227 * 1024;
static_assert(ForwardSmem<256>() <= kMaxSmem && DkDvSmem<256>() <= kMaxSmem &&
                  DqSmem<256>() <= kMaxSmem,
              "tiles exceed shared memory");

template <int kD>
absl::Status Forward(const Params& p, cudaStream_t stream) {
  return LaunchTiles(ForwardKernel<kD>, (p.queries + 63) / 64 * p.batch * p.heads, 128,
                     ForwardSmem<kD>(), stream, p, "flash attention forward (bf16)");
}

template <int kD>
absl::Status Backward(const Params& p, cudaStream_t stream) {
  if (absl::Status status =
          LaunchTiles(DkDvKernel<kD>, (p.keys + 63) / 64 * p.batch * p.kv_heads, 256,
                      DkDvSmem<kD>(), stream, p, "flash attention dK dV (bf16)");
      !status.ok()) {
    return status;
  }
  return LaunchTiles(DqKernel<kD>, (p.queries + 127) / 128 * p.batch * p.heads, 256,
                     DqSmem<kD>(), stream, p, "flash attention dQ (bf16)");
}

absl::Status Check(const AttentionShape& shape, std::initializer_list<const void*> inputs) {
  if (absl::Status status = ValidateAttentionShape(shape); !status.ok()) return status;
  if (!Bf16AttentionSupported(shape)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "bf16 flash attention needs head_dim a multiple of 8 up to 256, not ", shape.head_dim));
  }
  if (shape.heads > INT_MAX / 2 || shape.kv_heads > INT_MAX / 2) {
    return absl::InvalidArgumentError("bf16 flash attention: too many heads");
  }
  for (const void* input : inputs) {
    if (!Aligned16(input)) {
      return absl::InvalidArgumentError("bf16 flash attention: inputs must be 16-byte aligned");
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool Bf16AttentionSupported(const AttentionShape& shape) {
  return shape.head_dim > 0 && shape.head_dim <= 256 && shape.head_dim % 8 == 0;
}

absl::Status FlashAttentionForwardBf16Cuda(const AttentionShape& shape, const Bf16Bits* q,
                                           const Bf16Bits* k, const Bf16Bits* v, float* out,
                                           float* lse, cudaStream_t stream) {
  if (absl::Status status = Check(shape, {q, k, v}); !status.ok()) return status;
  if (shape.batch == 0 || shape.queries == 0) return absl::OkStatus();
  Params p = ParamsOf<Params>(shape);
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse_out = lse;
  if (shape.head_dim <= 64) return Forward<64>(p, stream);
  if (shape.head_dim <= 128) return Forward<128>(p, stream);
  return Forward<256>(p, stream);
}

absl::Status FlashAttentionBackwardBf16Cuda(const AttentionShape& shape, const Bf16Bits* q,
                                            const Bf16Bits* k, const Bf16Bits* v,
                                            const Bf16Bits* dout, const float* lse,
                                            const float* delta, float* dq, float* dk, float* dv,
                                            cudaStream_t stream) {
  if (absl::Status status = Check(shape, {q, k, v, dout}); !status.ok()) return status;
  if (shape.query_offset != 0) {
    return absl::InvalidArgumentError("attention backward needs query_offset 0");
  }
  if (shape.batch == 0 || shape.queries == 0) return absl::OkStatus();
  Params p = ParamsOf<Params>(shape);
  p.q = q;
  p.k = k;
  p.v = v;
  p.dout = dout;
  p.lse = lse;
  p.delta = delta;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  if (shape.head_dim <= 64) return Backward<64>(p, stream);
  if (shape.head_dim <= 128) return Backward<128>(p, stream);
  return Backward<256>(p, stream);
}

}  // namespace maximus::kernels
