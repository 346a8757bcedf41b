#include <cuda_runtime.h>

#include <cstdint>

#include "absl/strings/str_cat.h"
#include "kernels/cuda_status.h"
#include "kernels/importance_scorer.h"
#include "kernels/importance_scorer_cuda.h"

namespace maximus::kernels {
namespace {

// RowKernel: a block per row, a warp per hidden unit (8 units each), the
// score or, backward, dpre = dscore · w2 · (1 − h²) and dx += dpreᵀ W1.
// WeightTileKernel: dW1 partials over chunks of kChunkRows rows, a 32-column
// tile per block; ReduceKernel sums the chunks in order; VectorKernel the
// biases and w2.
constexpr int kWidth = static_cast<int>(kImportanceScorerWidth);
constexpr int kWarp = 32;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / kWarp;
constexpr int kTileCols = 32;
constexpr int kTileRows = 32;
constexpr int kChunkRows = 256;
static_assert(kWidth % kWarps == 0 && kThreads % kTileCols == 0, "tiles");
static_assert(kChunkRows % kTileRows == 0, "chunks");
static_assert((kTileRows * (kTileCols + 1) + kTileRows * kWidth) * sizeof(float) <= 48 * 1024,
              "WeightTileKernel static shared memory");

struct Params {
  const float* w1;
  const float* b1;
  const float* w2;
  const float* b2;
  const float* x;
  const float* dscores;
  float* scores;
  float* dx;
  float* h;      // [rows, width]
  float* dpre;   // [rows, width]
  float* parts;  // [chunks, width, input]
  float* grad_w1;
  float* grad_b1;
  float* grad_w2;
  float* grad_b2;
  int64_t rows, input, chunks;
};

__device__ __forceinline__ float WarpSum(float x) {
#pragma unroll
  for (int offset = kWarp / 2; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

template <bool kBackward>
__global__ void RowKernel(Params p) {
  __shared__ float hidden[kWidth];
  __shared__ float dpre[kWidth];
  const int64_t r = blockIdx.x;
  const float* x = p.x + r * p.input;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  for (int j = warp; j < kWidth; j += kWarps) {
    const float* wj = p.w1 + j * p.input;
    float sum = 0.0f;
    for (int64_t c = lane; c < p.input; c += kWarp) sum += wj[c] * x[c];
    sum = WarpSum(sum);
    if (lane == 0) hidden[j] = tanhf(p.b1[j] + sum);
  }
  __syncthreads();
  if (!kBackward) {
    if (threadIdx.x == 0) {
      float score = *p.b2;
      for (int j = 0; j < kWidth; ++j) score += p.w2[j] * hidden[j];
      p.scores[r] = score;
    }
    return;
  }
  if (threadIdx.x < kWidth) {
    const int j = threadIdx.x;
    const float h = hidden[j];
    const float d = p.dscores[r] * p.w2[j] * (1.0f - h * h);
    dpre[j] = d;
    p.h[r * kWidth + j] = h;
    p.dpre[r * kWidth + j] = d;
  }
  __syncthreads();
  float* dx = p.dx + r * p.input;
  for (int64_t c = threadIdx.x; c < p.input; c += kThreads) {
    float sum = 0.0f;
    for (int j = 0; j < kWidth; ++j) sum += dpre[j] * p.w1[j * p.input + c];
    dx[c] += sum;
  }
}

// Grid (column tiles, row chunks): parts[chunk, j, c] = Σ_{r in chunk} dpre[r, j] x[r, c].
__global__ void WeightTileKernel(Params p) {
  __shared__ float xs[kTileRows][kTileCols + 1];
  __shared__ float ds[kTileRows][kWidth];
  const int col = threadIdx.x % kTileCols, unit0 = threadIdx.x / kTileCols;
  constexpr int kUnitsPerThread = kWidth / (kThreads / kTileCols);
  const int64_t c = static_cast<int64_t>(blockIdx.x) * kTileCols + col;
  const int64_t chunk = blockIdx.y;
  const int64_t row_end = min((chunk + 1) * kChunkRows, p.rows);
  float acc[kUnitsPerThread] = {};
  for (int64_t row0 = chunk * kChunkRows; row0 < row_end; row0 += kTileRows) {
    for (int idx = threadIdx.x; idx < kTileRows * kTileCols; idx += kThreads) {
      const int rr = idx / kTileCols, cc = idx % kTileCols;
      const int64_t row = row0 + rr, column = static_cast<int64_t>(blockIdx.x) * kTileCols + cc;
      xs[rr][cc] = row < row_end && column < p.input ? p.x[row * p.input + column] : 0.0f;
    }
    for (int idx = threadIdx.x; idx < kTileRows * kWidth; idx += kThreads) {
      const int rr = idx / kWidth, j = idx % kWidth;
      const int64_t row = row0 + rr;
      ds[rr][j] = row < row_end ? p.dpre[row * kWidth + j] : 0.0f;
    }
    __syncthreads();
    for (int rr = 0; rr < kTileRows; ++rr) {
      const float xv = xs[rr][col];
#pragma unroll
      for (int m = 0; m < kUnitsPerThread; ++m) acc[m] += ds[rr][unit0 + m * (kThreads / kTileCols)] * xv;
    }
    __syncthreads();
  }
  if (c >= p.input) return;
#pragma unroll
  for (int m = 0; m < kUnitsPerThread; ++m) {
    const int j = unit0 + m * (kThreads / kTileCols);
    p.parts[(chunk * kWidth + j) * p.input + c] = acc[m];
  }
}

__global__ void ReduceKernel(Params p) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= kWidth * p.input) return;
  float sum = 0.0f;
  for (int64_t chunk = 0; chunk < p.chunks; ++chunk) sum += p.parts[chunk * kWidth * p.input + idx];
  p.grad_w1[idx] += sum;
}

// One block: thread j < width sums b1's and w2's gradients, thread `width` b2's.
__global__ void VectorKernel(Params p) {
  const int j = threadIdx.x;
  if (j < kWidth) {
    float db1 = 0.0f, dw2 = 0.0f;
    for (int64_t r = 0; r < p.rows; ++r) {
      db1 += p.dpre[r * kWidth + j];
      dw2 += p.dscores[r] * p.h[r * kWidth + j];
    }
    p.grad_b1[j] += db1;
    p.grad_w2[j] += dw2;
  } else if (j == kWidth) {
    float db2 = 0.0f;
    for (int64_t r = 0; r < p.rows; ++r) db2 += p.dscores[r];
    *p.grad_b2 += db2;
  }
}

absl::Status CheckSizes(int64_t input, int64_t rows) {
  if (input <= 0 || rows < 0 || rows > (int64_t{1} << 31) - 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance scorer: bad sizes, input ", input, ", rows ", rows));
  }
  return absl::OkStatus();
}

Params MakeParams(const ImportanceScorerWeights<float>& w, int64_t rows, const float* x) {
  Params p{};
  p.w1 = w.in_weight;
  p.b1 = w.in_bias;
  p.w2 = w.out_weight;
  p.b2 = w.out_bias;
  p.x = x;
  p.rows = rows;
  p.input = w.input;
  p.chunks = (rows + kChunkRows - 1) / kChunkRows;
  return p;
}

}  // namespace

absl::Status ImportanceScoresCuda(const ImportanceScorerWeights<float>& weights, int64_t rows,
                                  const float* x, float* scores, cudaStream_t stream) {
  if (absl::Status s = CheckSizes(weights.input, rows); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  Params p = MakeParams(weights, rows, x);
  p.scores = scores;
  RowKernel<false><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  return CudaStatus(cudaGetLastError(), "importance scores");
}

int64_t ImportanceScoresBackwardWorkspaceFloats(int64_t rows, int64_t input) {
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  return 2 * rows * kWidth + chunks * kWidth * input;
}

absl::Status ImportanceScoresBackwardCuda(const ImportanceScorerWeights<float>& weights,
                                          int64_t rows, const float* x, const float* dscores,
                                          float* dx, const ImportanceScorerGrads<float>& grads,
                                          float* workspace, cudaStream_t stream) {
  if (absl::Status s = CheckSizes(weights.input, rows); !s.ok()) return s;
  if (rows == 0) return absl::OkStatus();
  Params p = MakeParams(weights, rows, x);
  p.dscores = dscores;
  p.dx = dx;
  p.h = workspace;
  p.dpre = workspace + rows * kWidth;
  p.parts = workspace + 2 * rows * kWidth;
  p.grad_w1 = grads.in_weight;
  p.grad_b1 = grads.in_bias;
  p.grad_w2 = grads.out_weight;
  p.grad_b2 = grads.out_bias;
  RowKernel<true><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(p);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const dim3 tiles(static_cast<unsigned>((p.input + kTileCols - 1) / kTileCols),
                   static_cast<unsigned>(p.chunks));
  WeightTileKernel<<<tiles, kThreads, 0, stream>>>(p);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  ReduceKernel<<<static_cast<unsigned>((kWidth * p.input + kThreads - 1) / kThreads), kThreads, 0,
                 stream>>>(p);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  VectorKernel<<<1, kWidth + kWarp, 0, stream>>>(p);
  return CudaStatus(cudaGetLastError(), "importance scorer backward");
}

}  // namespace maximus::kernels
