#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_status.h"
#include "kernels/randnla_attention.h"
#include "kernels/randnla_attention_cuda.h"

namespace maximus::kernels {
namespace {

// The kernels (randnla_attention.md, "On the GPU"):
//   forward: DetailKernel (the running top-K, a block per sequence walking its
//     blocks), SketchPartialKernel (Φ diag(w_c) [K_c, V_c] per block c and KV
//     head), SketchPrefixKernel (the running sum over blocks times γ / b, in
//     block order), AttendKernel (a warp per query row: logits over its keys
//     into shared memory, one softmax, the weighted values).
//   backward: DqKernel (a warp per query row; also Σ dout·out), SlotKernel (a
//     warp per key slot of a query block: own-block keys straight into dk/dv,
//     detail and sketch slots into per-block partials), SuffixKernel (the
//     sketch gradients' suffix sum over blocks), TokenKernel (a warp per
//     (token, KV head): detail partials of the later blocks that chose it, in
//     block order, and the sketch path), DscoresKernel, DphiKernel (a block
//     per element of dΦ) and ParamKernel (γ and the factors, one block).
// Every sum has one owner and a fixed order: no atomics.
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kMaxHeadDim = 256;
constexpr int kPerLane = kMaxHeadDim / kWarp;  // a lane holds dims lane + 32 i
constexpr int kRowWarps = 4;                   // warps per block of the warp kernels
constexpr int kRowThreads = kRowWarps * kWarp;
constexpr int kThreads = 256;  // the other kernels
constexpr int64_t kMaxBlock = 4096, kMaxDetail = 4096, kMaxBudget = 8192;
constexpr int64_t kMaxSharedBytes = 227 * 1024;
// AttendKernel keeps each warp's logits; DetailKernel its candidates and kept set.
static_assert(kRowWarps * kMaxBudget * sizeof(float) <= kMaxSharedBytes, "AttendKernel smem");
static_assert((kMaxDetail + kMaxBlock) * 8 + kMaxDetail * 8 <= kMaxSharedBytes, "DetailKernel");
static_assert(kMaxBlock * sizeof(float) <= kMaxSharedBytes, "SketchPartialKernel smem");

struct Params {
  const float* q;
  const float* k;
  const float* v;
  const float* scores;
  const float* time_outer;
  const float* time_inner;
  const float* gamma;
  const float* out;
  const float* dout;
  float* o;
  float* lse;
  int32_t* detail;
  float* sk;
  float* sv;
  float* dq;
  float* dk;
  float* dv;
  float* dscores;
  float* grad_outer;
  float* grad_inner;
  float* grad_scale;
  // The backward's workspace.
  float* delta;       // [batch, heads, queries]
  float* det_dk;      // [batch, blocks, kv_heads, detail, head_dim]
  float* det_dv;
  float* dsk;         // [batch, blocks, kv_heads, sketch, head_dim]
  float* dsv;
  float* dweight;     // [batch, kv_heads, queries]
  float* dgamma_tok;  // [batch, kv_heads, queries]
  float* dphi_tok;    // [batch, kv_heads, queries, sketch]
  float* dphi;        // [sketch, block]
  int64_t batch, queries, query_offset, key_stride, q_row, kv_row;
  int heads, kv_heads, head_dim, group;
  int block, detail_k, sketch, blocks;
  int block_outer, block_inner, sketch_outer, sketch_inner;
  float scale, pressure;

  __device__ int64_t SketchAt(int64_t b, int blk, int g) const {
    return ((b * blocks + blk) * kv_heads + g) * static_cast<int64_t>(sketch) * head_dim;
  }
  __device__ const int32_t* DetailOf(int64_t b, int blk) const {
    return detail + (b * blocks + blk) * static_cast<int64_t>(detail_k);
  }
  // Block blk's detail count: every position before it exists, so the running
  // top-K holds min(detail, blk · block) of them.
  __device__ int DetailCount(int blk) const {
    return static_cast<int>(min(static_cast<int64_t>(detail_k), static_cast<int64_t>(blk) * block));
  }
  __device__ const float* KeyRow(const float* base, int64_t b, int64_t position, int g) const {
    return base + (b * key_stride + position) * kv_row + static_cast<int64_t>(g) * head_dim;
  }
  // Φ[r, τ] = time_outer[s1, l1] · time_inner[s2, l2], as the reference forms it.
  __device__ float Phi(int r, int tau) const {
    const int s1 = r / sketch_inner, s2 = r % sketch_inner;
    const int l1 = tau / block_inner, l2 = tau % block_inner;
    return time_outer[s1 * block_outer + l1] * time_inner[s2 * block_inner + l2];
  }
  __device__ float Weight(int64_t b, int64_t position) const {
    return 1.0f / (1.0f + expf(-(scores[b * key_stride + position] + pressure)));
  }
};

// xor butterflies: every lane ends with the same bits.
__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) x += __shfl_xor_sync(kFullMask, x, offset);
  return x;
}

__device__ __forceinline__ int Lane() { return threadIdx.x % kWarp; }

// A head_dim row in registers: lane l holds dims l, l + 32, ...; zero past head_dim.
struct Row {
  float x[kPerLane];

  __device__ void Load(const float* row, int head_dim) {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = Lane() + i * kWarp;
      x[i] = d < head_dim ? row[d] : 0.0f;
    }
  }
  __device__ void Zero() {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) x[i] = 0.0f;
  }
  __device__ void Store(float* row, int head_dim) const {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = Lane() + i * kWarp;
      if (d < head_dim) row[d] = x[i];
    }
  }
  // this += alpha · row (a row in memory).
  __device__ void Axpy(float alpha, const float* row, int head_dim) {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = Lane() + i * kWarp;
      if (d < head_dim) x[i] += alpha * row[d];
    }
  }
  __device__ void Axpy(float alpha, const Row& row) {
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) x[i] += alpha * row.x[i];
  }
  // The whole warp's dot product with a row in memory.
  __device__ float Dot(const float* row, int head_dim) const {
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
      const int d = Lane() + i * kWarp;
      if (d < head_dim) sum += x[i] * row[d];
    }
    return WarpSum(sum);
  }
  __device__ float Dot(const Row& row) const {
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) sum += x[i] * row.x[i];
    return WarpSum(sum);
  }
};

// The keys a query block sees for one KV head, in the reference's order: its
// own block up to the query, the detail positions, the sketch tokens.
struct KeySet {
  const float* own_k;  // position blk · block
  const float* own_v;
  const float* k;  // position 0 of the sequence's KV head
  const float* v;
  const int32_t* detail;
  const float* sk;
  const float* sv;
  int64_t kv_row;
  int head_dim, detail_count, sketch_count;

  __device__ KeySet(const Params& p, int64_t b, int blk, int g) {
    k = p.KeyRow(p.k, b, 0, g);
    v = p.KeyRow(p.v, b, 0, g);
    own_k = k + static_cast<int64_t>(blk) * p.block * p.kv_row;
    own_v = v + static_cast<int64_t>(blk) * p.block * p.kv_row;
    kv_row = p.kv_row;
    head_dim = p.head_dim;
    detail = p.detail_k > 0 ? p.DetailOf(b, blk) : nullptr;
    detail_count = p.DetailCount(blk);
    sketch_count = blk > 0 ? p.sketch : 0;
    sk = p.sk + p.SketchAt(b, blk, g);
    sv = p.sv + p.SketchAt(b, blk, g);
  }
  // Key n of a query that sees `own` keys of its block.
  __device__ const float* Key(int n, int own) const {
    if (n < own) return own_k + n * kv_row;
    n -= own;
    if (n < detail_count) return k + detail[n] * kv_row;
    return sk + static_cast<int64_t>(n - detail_count) * head_dim;
  }
  __device__ const float* Value(int n, int own) const {
    if (n < own) return own_v + n * kv_row;
    n -= own;
    if (n < detail_count) return v + detail[n] * kv_row;
    return sv + static_cast<int64_t>(n - detail_count) * head_dim;
  }
  __device__ int Count(int own) const { return own + detail_count + sketch_count; }
};

// A query row of the warp kernels: batch b, head h, query i (rows ordered as lse).
struct QueryRow {
  int64_t row, b, i, position;
  int h, g, blk, own;

  __device__ QueryRow(const Params& p, int64_t r) {
    row = r;
    i = r % p.queries;
    h = static_cast<int>((r / p.queries) % p.heads);
    b = r / (p.queries * p.heads);
    g = h / p.group;
    position = p.query_offset + i;
    blk = static_cast<int>(position / p.block);
    own = static_cast<int>(position - static_cast<int64_t>(blk) * p.block) + 1;
  }
  __device__ int64_t QAt(const Params& p) const {
    return (b * p.queries + i) * p.q_row + static_cast<int64_t>(h) * p.head_dim;
  }
};

__device__ __forceinline__ bool Ranks(float score_a, int32_t pos_a, float score_b, int32_t pos_b) {
  return score_a > score_b || (score_a == score_b && pos_a < pos_b);
}

// One block per sequence. Block blk's set is the top-`detail` of the previous
// set and block blk − 1 by (score descending, position ascending), written in
// ascending position order. A candidate's rank is the number of candidates
// above it (a strict total order, so ranks are distinct).
__global__ void DetailKernel(Params p) {
  extern __shared__ unsigned char smem_raw[];
  const int cap = p.detail_k + p.block;
  float* cand_score = reinterpret_cast<float*>(smem_raw);
  int32_t* cand_pos = reinterpret_cast<int32_t*>(cand_score + cap);
  float* kept_score = reinterpret_cast<float*>(cand_pos + cap);
  int32_t* kept_pos = reinterpret_cast<int32_t*>(kept_score + p.detail_k);
  const int64_t b = blockIdx.x;
  int kept = 0;
  for (int blk = 0; blk < p.blocks; ++blk) {
    int32_t* out = p.detail + (b * p.blocks + blk) * static_cast<int64_t>(p.detail_k);
    if (blk > 0) {
      const int n = kept + p.block;
      for (int c = threadIdx.x; c < n; c += blockDim.x) {
        if (c < kept) {
          cand_score[c] = kept_score[c];
          cand_pos[c] = kept_pos[c];
        } else {
          const int64_t t = static_cast<int64_t>(blk - 1) * p.block + (c - kept);
          cand_score[c] = p.scores[b * p.key_stride + t];
          cand_pos[c] = static_cast<int32_t>(t);
        }
      }
      __syncthreads();  // candidates complete; kept_* no longer read
      for (int c = threadIdx.x; c < n; c += blockDim.x) {
        int rank = 0;
        for (int j = 0; j < n; ++j) {
          rank += Ranks(cand_score[j], cand_pos[j], cand_score[c], cand_pos[c]) ? 1 : 0;
        }
        if (rank < p.detail_k) {
          kept_score[rank] = cand_score[c];
          kept_pos[rank] = cand_pos[c];
        }
      }
      kept = min(p.detail_k, n);
      __syncthreads();  // kept_* complete; candidates free again
    }
    for (int c = threadIdx.x; c < p.detail_k; c += blockDim.x) {
      if (c < kept) {
        int slot = 0;
        for (int j = 0; j < kept; ++j) slot += kept_pos[j] < kept_pos[c] ? 1 : 0;
        out[slot] = kept_pos[c];
      } else {
        out[c] = -1;
      }
    }
    // The next iteration's first writes are to cand_*, which this one no
    // longer reads; kept_* is rewritten only after the next barrier.
  }
}

// Grid (blocks − 1, batch · kv_heads): slot c + 1 of the sketch buffers
// receives Φ diag(w_c) [K_c, V_c], block c's contribution.
__global__ void SketchPartialKernel(Params p) {
  extern __shared__ float weight[];  // [block]
  const int c = blockIdx.x;
  const int64_t b = blockIdx.y / p.kv_heads;
  const int g = blockIdx.y % p.kv_heads;
  const int64_t first = static_cast<int64_t>(c) * p.block;
  for (int tau = threadIdx.x; tau < p.block; tau += blockDim.x) weight[tau] = p.Weight(b, first + tau);
  __syncthreads();
  const float* kc = p.KeyRow(p.k, b, first, g);
  const float* vc = p.KeyRow(p.v, b, first, g);
  const int64_t at = p.SketchAt(b, c + 1, g);
  for (int e = threadIdx.x; e < p.sketch * p.head_dim; e += blockDim.x) {
    const int r = e / p.head_dim, d = e % p.head_dim;
    float sum_k = 0.0f, sum_v = 0.0f;
    for (int tau = 0; tau < p.block; ++tau) {
      const float f = p.Phi(r, tau) * weight[tau];
      sum_k += f * kc[tau * p.kv_row + d];
      sum_v += f * vc[tau * p.kv_row + d];
    }
    p.sk[at + e] = sum_k;
    p.sv[at + e] = sum_v;
  }
}

// A thread per (sequence, KV head, sketch element): slot b becomes
// γ / b · Σ_{c<b} (slot c + 1's partial), summed in block order; slot 0 zero.
__global__ void SketchPrefixKernel(Params p) {
  const int64_t per = static_cast<int64_t>(p.sketch) * p.head_dim;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= p.batch * p.kv_heads * per) return;
  const int64_t e = idx % per, b = idx / (per * p.kv_heads);
  const int g = static_cast<int>((idx / per) % p.kv_heads);
  const float gamma = *p.gamma;
  float sum_k = 0.0f, sum_v = 0.0f;
  p.sk[p.SketchAt(b, 0, g) + e] = 0.0f;
  p.sv[p.SketchAt(b, 0, g) + e] = 0.0f;
  for (int blk = 1; blk < p.blocks; ++blk) {
    const int64_t at = p.SketchAt(b, blk, g) + e;
    sum_k += p.sk[at];
    sum_v += p.sv[at];
    const float mean = gamma / static_cast<float>(blk);
    p.sk[at] = mean * sum_k;
    p.sv[at] = mean * sum_v;
  }
}

// A warp per query row; shared memory holds each warp's logits (the key budget).
__global__ void AttendKernel(Params p, int budget) {
  extern __shared__ float logits_all[];
  const int warp = threadIdx.x / kWarp;
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowWarps) + warp;
  if (r >= p.batch * p.heads * p.queries) return;
  float* logits = logits_all + warp * budget;
  const QueryRow row(p, r);
  const KeySet keys(p, row.b, row.blk, row.g);
  const int count = keys.Count(row.own);
  Row q;
  q.Load(p.q + row.QAt(p), p.head_dim);
  float max = -INFINITY;
  for (int n = 0; n < count; ++n) {
    const float z = p.scale * q.Dot(keys.Key(n, row.own), p.head_dim);
    if (Lane() == 0) logits[n] = z;
    max = fmaxf(max, z);
  }
  __syncwarp();
  float partial = 0.0f;
  for (int n = Lane(); n < count; n += kWarp) {
    const float e = expf(logits[n] - max);
    logits[n] = e;
    partial += e;
  }
  const float sum = WarpSum(partial);
  __syncwarp();
  const float inv = 1.0f / sum;
  Row o;
  o.Zero();
  for (int n = 0; n < count; ++n) o.Axpy(logits[n] * inv, keys.Value(n, row.own), p.head_dim);
  o.Store(p.o + row.QAt(p), p.head_dim);
  if (Lane() == 0) p.lse[r] = max + logf(sum);
}

// A warp per query row: dq = scale Σ_n dz_n key_n, and delta = dout·out for
// SlotKernel.
__global__ void DqKernel(Params p) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowWarps) + threadIdx.x / kWarp;
  if (r >= p.batch * p.heads * p.queries) return;
  const QueryRow row(p, r);
  const KeySet keys(p, row.b, row.blk, row.g);
  Row q, dout;
  q.Load(p.q + row.QAt(p), p.head_dim);
  dout.Load(p.dout + row.QAt(p), p.head_dim);
  const float delta = dout.Dot(p.out + row.QAt(p), p.head_dim);
  const float lse = p.lse[r];
  Row dq;
  dq.Zero();
  for (int n = 0, count = keys.Count(row.own); n < count; ++n) {
    const float* key = keys.Key(n, row.own);
    const float prob = expf(p.scale * q.Dot(key, p.head_dim) - lse);
    const float dz = prob * (dout.Dot(keys.Value(n, row.own), p.head_dim) - delta);
    dq.Axpy(p.scale * dz, key, p.head_dim);
  }
  dq.Store(p.dq + row.QAt(p), p.head_dim);
  if (Lane() == 0) p.delta[r] = delta;
}

// Grid (slots / kRowWarps, blocks, batch · kv_heads); a warp per key slot of
// a query block: slots [0, block) its own keys, then its detail slots, then its
// sketch tokens. Each sums, over the group's heads and the block's queries
// that see it, dk = scale Σ dz q and dv = Σ p dout.
__global__ void SlotKernel(Params p, int slots) {
  const int n = blockIdx.x * kRowWarps + threadIdx.x / kWarp;
  if (n >= slots) return;
  const int blk = blockIdx.y;
  const int64_t b = blockIdx.z / p.kv_heads;
  const int g = blockIdx.z % p.kv_heads;
  const int64_t first = static_cast<int64_t>(blk) * p.block;
  const int64_t last = min(first + p.block, p.queries);
  const float* key;
  const float* value;
  float* dk_out;
  float* dv_out;
  int64_t first_query = first;
  if (n < p.block) {
    const int64_t j = first + n;
    if (j >= p.queries) return;
    key = p.KeyRow(p.k, b, j, g);
    value = p.KeyRow(p.v, b, j, g);
    dk_out = p.dk + (b * p.key_stride + j) * p.kv_row + static_cast<int64_t>(g) * p.head_dim;
    dv_out = p.dv + (b * p.key_stride + j) * p.kv_row + static_cast<int64_t>(g) * p.head_dim;
    first_query = j;  // causal within the block
  } else if (n < p.block + p.detail_k) {
    const int d = n - p.block;
    if (d >= p.DetailCount(blk)) return;
    const int64_t j = p.DetailOf(b, blk)[d];
    key = p.KeyRow(p.k, b, j, g);
    value = p.KeyRow(p.v, b, j, g);
    const int64_t at = (((b * p.blocks + blk) * p.kv_heads + g) * p.detail_k + d) * p.head_dim;
    dk_out = p.det_dk + at;
    dv_out = p.det_dv + at;
  } else {
    const int s = n - p.block - p.detail_k;
    if (blk == 0 || s >= p.sketch) return;
    const int64_t at = p.SketchAt(b, blk, g) + static_cast<int64_t>(s) * p.head_dim;
    key = p.sk + at;
    value = p.sv + at;
    dk_out = p.dsk + at;
    dv_out = p.dsv + at;
  }
  Row kr, vr, dk, dv;
  kr.Load(key, p.head_dim);
  vr.Load(value, p.head_dim);
  dk.Zero();
  dv.Zero();
  for (int h = g * p.group; h < (g + 1) * p.group; ++h) {
    for (int64_t i = first_query; i < last; ++i) {
      const int64_t at = (b * p.queries + i) * p.q_row + static_cast<int64_t>(h) * p.head_dim;
      const int64_t r = (b * p.heads + h) * p.queries + i;
      Row q, dout;
      q.Load(p.q + at, p.head_dim);
      dout.Load(p.dout + at, p.head_dim);
      const float prob = expf(p.scale * q.Dot(kr) - p.lse[r]);
      const float dz = prob * (dout.Dot(vr) - p.delta[r]);
      dk.Axpy(p.scale * dz, q);
      dv.Axpy(prob, dout);
    }
  }
  dk.Store(dk_out, p.head_dim);
  dv.Store(dv_out, p.head_dim);
}

// A thread per (sequence, KV head, sketch element): slot c + 1 becomes
// acc_c = Σ_{b>c} dsketch_b / b, from the last block down (the reference's order).
__global__ void SuffixKernel(Params p) {
  const int64_t per = static_cast<int64_t>(p.sketch) * p.head_dim;
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= p.batch * p.kv_heads * per) return;
  const int64_t e = idx % per, b = idx / (per * p.kv_heads);
  const int g = static_cast<int>((idx / per) % p.kv_heads);
  float acc_k = 0.0f, acc_v = 0.0f;
  for (int c = p.blocks - 2; c >= 0; --c) {
    const int64_t at = p.SketchAt(b, c + 1, g) + e;
    const float inv = 1.0f / static_cast<float>(c + 1);
    acc_k += inv * p.dsk[at];
    acc_v += inv * p.dsv[at];
    p.dsk[at] = acc_k;
    p.dsv[at] = acc_v;
  }
}

// A warp per (sequence, token t, KV head): dk, dv of t (own-block part from
// SlotKernel) plus its detail partials and its sketch path; the score weight's
// and the parameters' per-token terms.
__global__ void TokenKernel(Params p) {
  const int64_t r = blockIdx.x * static_cast<int64_t>(kRowWarps) + threadIdx.x / kWarp;
  if (r >= p.batch * p.queries * p.kv_heads) return;
  const int g = static_cast<int>(r % p.kv_heads);
  const int64_t t = (r / p.kv_heads) % p.queries, b = r / (p.kv_heads * p.queries);
  const int c = static_cast<int>(t / p.block), tau = static_cast<int>(t % p.block);
  float* dk_at = p.dk + (b * p.key_stride + t) * p.kv_row + static_cast<int64_t>(g) * p.head_dim;
  float* dv_at = p.dv + (b * p.key_stride + t) * p.kv_row + static_cast<int64_t>(g) * p.head_dim;
  Row dk, dv;
  dk.Load(dk_at, p.head_dim);
  dv.Load(dv_at, p.head_dim);
  // The blocks whose detail set holds t are consecutive from c + 1: a running
  // top-K under a strict order never takes back a token it dropped.
  for (int blk = c + 1; blk < p.blocks && p.detail_k > 0; ++blk) {
    const int32_t* chosen = p.DetailOf(b, blk);
    const int count = p.DetailCount(blk);
    int slot = -1;
    for (int base = 0; base < count && slot < 0; base += kWarp) {
      const int idx = base + Lane();
      const unsigned hit = __ballot_sync(kFullMask, idx < count && chosen[idx] == t);
      if (hit != 0) slot = base + __ffs(hit) - 1;
    }
    if (slot < 0) break;
    const int64_t at = (((b * p.blocks + blk) * p.kv_heads + g) * p.detail_k + slot) * p.head_dim;
    dk.Axpy(1.0f, p.det_dk + at, p.head_dim);
    dv.Axpy(1.0f, p.det_dv + at, p.head_dim);
  }
  const int64_t token = (b * p.kv_heads + g) * p.queries + t;
  float* dphi = p.dphi_tok + token * p.sketch;
  if (c + 1 < p.blocks) {
    const float gamma = *p.gamma;
    const float w = p.Weight(b, t);
    const float gw = gamma * w;
    const float* acc_k = p.dsk + p.SketchAt(b, c + 1, g);
    const float* acc_v = p.dsv + p.SketchAt(b, c + 1, g);
    Row kt, vt, uk, uv;
    kt.Load(p.KeyRow(p.k, b, t, g), p.head_dim);
    vt.Load(p.KeyRow(p.v, b, t, g), p.head_dim);
    uk.Zero();
    uv.Zero();
    for (int s = 0; s < p.sketch; ++s) {
      const float f = p.Phi(s, tau);
      const float* ak = acc_k + static_cast<int64_t>(s) * p.head_dim;
      const float* av = acc_v + static_cast<int64_t>(s) * p.head_dim;
      uk.Axpy(f, ak, p.head_dim);
      uv.Axpy(f, av, p.head_dim);
      const float through = kt.Dot(ak, p.head_dim) + vt.Dot(av, p.head_dim);
      if (Lane() == 0) dphi[s] = gw * through;
    }
    dk.Axpy(gw, uk);
    dv.Axpy(gw, uv);
    const float through = uk.Dot(kt) + uv.Dot(vt);
    if (Lane() == 0) {
      p.dweight[token] = gamma * through;
      p.dgamma_tok[token] = w * through;
    }
  } else {
    // The last block feeds no sketch.
    for (int s = Lane(); s < p.sketch; s += kWarp) dphi[s] = 0.0f;
    if (Lane() == 0) {
      p.dweight[token] = 0.0f;
      p.dgamma_tok[token] = 0.0f;
    }
  }
  dk.Store(dk_at, p.head_dim);
  dv.Store(dv_at, p.head_dim);
}

// A thread per (sequence, token): dscore = Σ_g dweight · w (1 − w), heads in order.
__global__ void DscoresKernel(Params p) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= p.batch * p.queries) return;
  const int64_t b = idx / p.queries, t = idx % p.queries;
  float sum = 0.0f;
  for (int g = 0; g < p.kv_heads; ++g) sum += p.dweight[(b * p.kv_heads + g) * p.queries + t];
  const float w = p.Weight(b, t);
  p.dscores[idx] = sum * w * (1.0f - w);
}

// Sums a block's per-thread values in a fixed tree (kThreads threads);
// every thread gets the total.
__device__ float BlockSum(float value, float* scratch) {
  scratch[threadIdx.x] = value;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) scratch[threadIdx.x] += scratch[threadIdx.x + half];
    __syncthreads();
  }
  const float total = scratch[0];
  __syncthreads();  // scratch is free again
  return total;
}

// A block per element (s, τ) of dΦ: the sum of the tokens' terms over
// (sequence, KV head, block c < blocks − 1), in a fixed order.
__global__ void DphiKernel(Params p) {
  __shared__ float scratch[kThreads];
  const int s = blockIdx.x / p.block, tau = blockIdx.x % p.block;
  const int64_t per = p.blocks - 1, items = p.batch * p.kv_heads * per;
  float sum = 0.0f;
  for (int64_t idx = threadIdx.x; idx < items; idx += kThreads) {
    const int64_t bg = idx / per, c = idx % per;
    sum += p.dphi_tok[(bg * p.queries + c * p.block + tau) * p.sketch + s];
  }
  const float total = BlockSum(sum, scratch);
  if (threadIdx.x == 0) p.dphi[blockIdx.x] = total;
}

// Φ[(s1, s2), (l1, l2)] = outer[s1, l1] · inner[s2, l2], so d outer[s1, l1] =
// Σ_{s2, l2} dΦ · inner[s2, l2], and d inner likewise over the outer factor.
__device__ void AddFactorGradient(const Params& p, bool outer) {
  const int rows = outer ? p.sketch_outer : p.sketch_inner;
  const int cols = outer ? p.block_outer : p.block_inner;
  const int other_rows = outer ? p.sketch_inner : p.sketch_outer;
  const int other_cols = outer ? p.block_inner : p.block_outer;
  const float* other = outer ? p.time_inner : p.time_outer;
  float* grad = outer ? p.grad_outer : p.grad_inner;
  for (int e = threadIdx.x; e < rows * cols; e += kThreads) {
    const int row = e / cols, col = e % cols;
    float d = 0.0f;
    for (int orow = 0; orow < other_rows; ++orow) {
      for (int ocol = 0; ocol < other_cols; ++ocol) {
        const int s1 = outer ? row : orow, s2 = outer ? orow : row;
        const int l1 = outer ? col : ocol, l2 = outer ? ocol : col;
        d += p.dphi[(s1 * p.sketch_inner + s2) * p.block + l1 * p.block_inner + l2] *
             other[orow * other_cols + ocol];
      }
    }
    grad[e] += d;
  }
}

// One block of kThreads: dγ summed in a fixed order, dΦ (DphiKernel) folded
// through the Kronecker product into the factors; all added to the gradients.
__global__ void ParamKernel(Params p) {
  __shared__ float scratch[kThreads];
  const int64_t tokens = p.batch * p.kv_heads * p.queries;
  float sum = 0.0f;
  for (int64_t idx = threadIdx.x; idx < tokens; idx += kThreads) sum += p.dgamma_tok[idx];
  const float dgamma = BlockSum(sum, scratch);
  if (threadIdx.x == 0) *p.grad_scale += dgamma;
  AddFactorGradient(p, /*outer=*/true);
  AddFactorGradient(p, /*outer=*/false);
}

Params MakeParams(const RandnlaShape& s, const float* q, const float* k, const float* v,
                  const float* scores, const SketchFactors<float>& sketch,
                  const RandnlaDeviceSaved& saved) {
  const AttentionShape& a = s.attention;
  const SketchFactorShape f = SketchFactorsOf(s.config);
  Params p{};
  p.q = q;
  p.k = k;
  p.v = v;
  p.scores = scores;
  p.time_outer = sketch.time_outer;
  p.time_inner = sketch.time_inner;
  p.gamma = sketch.scale;
  p.lse = saved.lse;
  p.detail = saved.detail;
  p.sk = saved.sketch_keys;
  p.sv = saved.sketch_values;
  p.batch = a.batch;
  p.queries = a.queries;
  p.query_offset = a.query_offset;
  p.key_stride = a.KeyStride();
  p.q_row = a.heads * a.head_dim;
  p.kv_row = a.kv_heads * a.head_dim;
  p.heads = static_cast<int>(a.heads);
  p.kv_heads = static_cast<int>(a.kv_heads);
  p.head_dim = static_cast<int>(a.head_dim);
  p.group = static_cast<int>(a.heads / a.kv_heads);
  p.block = static_cast<int>(s.config.block);
  p.detail_k = static_cast<int>(s.config.detail);
  p.sketch = static_cast<int>(s.config.sketch);
  p.blocks = static_cast<int>(s.Blocks());
  p.block_outer = static_cast<int>(f.block_outer);
  p.block_inner = static_cast<int>(f.block_inner);
  p.sketch_outer = static_cast<int>(f.sketch_outer);
  p.sketch_inner = static_cast<int>(f.sketch_inner);
  p.scale = a.scale;
  p.pressure = static_cast<float>(ImportancePressure(s.config));
  return p;
}

unsigned GridFor(int64_t items, int64_t per_block) {
  return static_cast<unsigned>((items + per_block - 1) / per_block);
}

absl::Status Launched(const char* what) { return CudaStatus(cudaGetLastError(), what); }

}  // namespace

RandnlaCudaSizes RandnlaCudaSizesOf(const RandnlaShape& s) {
  const AttentionShape& a = s.attention;
  const int64_t blocks = s.Blocks(), hd = a.head_dim;
  RandnlaCudaSizes sizes;
  sizes.lse = a.batch * a.heads * a.queries;
  sizes.detail = a.batch * blocks * s.config.detail;
  sizes.sketch = a.batch * blocks * a.kv_heads * s.config.sketch * hd;
  const int64_t tokens = a.batch * a.kv_heads * a.queries;
  sizes.backward_workspace = sizes.lse + 2 * a.batch * blocks * a.kv_heads * s.config.detail * hd +
                             2 * sizes.sketch + 2 * tokens + tokens * s.config.sketch +
                             s.config.sketch * s.config.block;
  return sizes;
}

absl::Status ValidateRandnlaCudaShape(const RandnlaShape& s) {
  if (absl::Status status = ValidateRandnlaShape(s); !status.ok()) return status;
  const AttentionShape& a = s.attention;
  const RandnlaConfig& c = s.config;
  if (a.head_dim > kMaxHeadDim) {
    return absl::InvalidArgumentError(absl::StrCat("RandNLA attention on the GPU takes head_dim ",
                                                   "up to ", kMaxHeadDim, "; got ", a.head_dim));
  }
  if (c.block > kMaxBlock || c.detail > kMaxDetail || RandnlaKeyBudget(c) > kMaxBudget) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RandNLA attention on the GPU takes block and detail up to ", kMaxBlock,
        " and block + detail + sketch up to ", kMaxBudget, "; got block ", c.block, ", detail ",
        c.detail, ", sketch ", c.sketch));
  }
  if (s.Blocks() > 65535 || a.batch * a.kv_heads > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RandNLA attention on the GPU takes up to 65535 blocks and batch x kv_heads up to 65535; "
        "got ",
        s.Blocks(), " blocks, batch ", a.batch, " x kv_heads ", a.kv_heads));
  }
  return absl::OkStatus();
}

absl::Status RandnlaAttentionCuda(const RandnlaShape& s, const float* q, const float* k,
                                  const float* v, const float* scores,
                                  const SketchFactors<float>& sketch, float* out,
                                  const RandnlaDeviceSaved& saved, cudaStream_t stream) {
  if (absl::Status status = ValidateRandnlaCudaShape(s); !status.ok()) return status;
  if (s.attention.batch == 0 || s.attention.queries == 0) return absl::OkStatus();
  Params p = MakeParams(s, q, k, v, scores, sketch, saved);
  p.o = out;
  if (p.detail_k > 0) {
    const size_t smem = (2 * static_cast<size_t>(p.detail_k) + p.block) * 8;
    MAXIMUS_CUDA_RETURN_IF_ERROR(
        cudaFuncSetAttribute(DetailKernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(smem)));
    DetailKernel<<<static_cast<unsigned>(p.batch), kThreads, smem, stream>>>(p);
    MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA detail"));
  }
  if (p.blocks > 1) {
    const dim3 grid(p.blocks - 1, static_cast<unsigned>(p.batch * p.kv_heads));
    SketchPartialKernel<<<grid, kThreads, p.block * sizeof(float), stream>>>(p);
    MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA sketch partials"));
  }
  SketchPrefixKernel<<<GridFor(p.batch * p.kv_heads * p.sketch * p.head_dim, kThreads), kThreads,
                       0, stream>>>(p);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA sketch prefix"));
  const int budget = static_cast<int>(RandnlaKeyBudget(s.config));
  const size_t smem = static_cast<size_t>(kRowWarps) * budget * sizeof(float);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaFuncSetAttribute(
      AttendKernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  AttendKernel<<<GridFor(p.batch * p.heads * p.queries, kRowWarps), kRowThreads, smem, stream>>>(
      p, budget);
  return Launched("RandNLA attend");
}

absl::Status RandnlaAttentionBackwardCuda(const RandnlaShape& s, const float* q, const float* k,
                                          const float* v, const float* scores,
                                          const SketchFactors<float>& sketch, const float* out,
                                          const RandnlaDeviceSaved& saved, const float* dout,
                                          float* dq, float* dk, float* dv, float* dscores,
                                          const SketchFactorGrads<float>& grads, float* workspace,
                                          cudaStream_t stream) {
  if (absl::Status status = ValidateRandnlaCudaShape(s); !status.ok()) return status;
  const AttentionShape& a = s.attention;
  if (a.query_offset != 0 || a.KeyStride() != a.queries) {
    return absl::InvalidArgumentError(
        "RandNLA attention backward needs query_offset 0 and key_stride = queries");
  }
  if (a.batch == 0 || a.queries == 0) return absl::OkStatus();
  Params p = MakeParams(s, q, k, v, scores, sketch, saved);
  p.out = out;
  p.dout = dout;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  p.dscores = dscores;
  p.grad_outer = grads.time_outer;
  p.grad_inner = grads.time_inner;
  p.grad_scale = grads.scale;
  const RandnlaCudaSizes sizes = RandnlaCudaSizesOf(s);
  const int64_t detail_partials = a.batch * s.Blocks() * a.kv_heads * s.config.detail * a.head_dim;
  const int64_t tokens = a.batch * a.kv_heads * a.queries;
  float* at = workspace;
  auto take = [&at](int64_t n) {
    float* piece = at;
    at += n;
    return piece;
  };
  p.delta = take(sizes.lse);
  p.det_dk = take(detail_partials);
  p.det_dv = take(detail_partials);
  p.dsk = take(sizes.sketch);
  p.dsv = take(sizes.sketch);
  p.dweight = take(tokens);
  p.dgamma_tok = take(tokens);
  p.dphi_tok = take(tokens * s.config.sketch);
  p.dphi = take(s.config.sketch * s.config.block);

  DqKernel<<<GridFor(p.batch * p.heads * p.queries, kRowWarps), kRowThreads, 0, stream>>>(p);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA dq"));
  const int slots = static_cast<int>(RandnlaKeyBudget(s.config));
  const dim3 slot_grid(GridFor(slots, kRowWarps), p.blocks,
                       static_cast<unsigned>(p.batch * p.kv_heads));
  SlotKernel<<<slot_grid, kRowThreads, 0, stream>>>(p, slots);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA key slots"));
  SuffixKernel<<<GridFor(p.batch * p.kv_heads * p.sketch * p.head_dim, kThreads), kThreads, 0,
                 stream>>>(p);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA sketch suffix"));
  TokenKernel<<<GridFor(tokens, kRowWarps), kRowThreads, 0, stream>>>(p);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA tokens"));
  DscoresKernel<<<GridFor(p.batch * p.queries, kThreads), kThreads, 0, stream>>>(p);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA dscores"));
  DphiKernel<<<static_cast<unsigned>(p.sketch * p.block), kThreads, 0, stream>>>(p);
  MAXIMUS_RETURN_IF_ERROR(Launched("RandNLA dPhi"));
  ParamKernel<<<1, kThreads, 0, stream>>>(p);
  return Launched("RandNLA sketch parameters");
}

}  // namespace maximus::kernels
