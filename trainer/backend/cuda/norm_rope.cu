// RMSNorm forward and backward, and rotary embeddings.

#include <cmath>

#include "trainer/backend/cuda/launch.cuh"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer::cuda {
namespace {

constexpr int kRowsPerBlock = 8;  // One warp per row.
constexpr int kPartialRows = 256;  // Rows per partial sum of the weight gradient.

__device__ __forceinline__ float WarpSum(float value) {
  for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_xor_sync(0xffffffffu, value, offset);
  return value;
}

// x and out may be the same (decoding normalises keys in the cache in
// place): each lane reads an element before it writes it.
__global__ void RmsNormKernel(const float* x, const float* __restrict__ weight, int64_t rows,
                              int64_t d, float eps, float* out, float* __restrict__ rstd) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * d;
  float sum = 0.0f;
  for (int64_t j = lane; j < d; j += 32) sum += xr[j] * xr[j];
  sum = WarpSum(sum);
  const float s = rsqrtf(sum / static_cast<float>(d) + eps);
  if (lane == 0) rstd[row] = s;
  float* o = out + row * d;
  for (int64_t j = lane; j < d; j += 32) o[j] = xr[j] * s * (1.0f + weight[j]);
}

__global__ void RmsNormBackwardKernel(const float* __restrict__ x, const float* __restrict__ weight,
                                      const float* __restrict__ rstd,
                                      const float* __restrict__ dout, int64_t rows, int64_t d,
                                      float* __restrict__ dx) {
  const int64_t row = blockIdx.x * int64_t{kRowsPerBlock} + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (row >= rows) return;
  const float* xr = x + row * d;
  const float* dy = dout + row * d;
  float dot = 0.0f;  // Σ dy (1 + w) x
  for (int64_t j = lane; j < d; j += 32) dot += dy[j] * (1.0f + weight[j]) * xr[j];
  dot = WarpSum(dot);
  const float s = rstd[row];
  const float c = dot * s * s * s / static_cast<float>(d);
  float* dxr = dx + row * d;
  for (int64_t j = lane; j < d; j += 32) dxr[j] = s * (1.0f + weight[j]) * dy[j] - c * xr[j];
}

// partials[p, j] = Σ over rows [p * kPartialRows, ...) of dout · x · rstd.
__global__ void RmsNormWeightPartialsKernel(const float* __restrict__ x,
                                            const float* __restrict__ rstd,
                                            const float* __restrict__ dout, int64_t rows,
                                            int64_t d, float* __restrict__ partials) {
  const int64_t column = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (column >= d) return;
  const int64_t begin = blockIdx.y * int64_t{kPartialRows};
  const int64_t end = min(rows, begin + kPartialRows);
  float sum = 0.0f;
  for (int64_t r = begin; r < end; ++r) sum += dout[r * d + column] * x[r * d + column] * rstd[r];
  partials[blockIdx.y * d + column] = sum;
}

__global__ void RmsNormWeightReduceKernel(const float* __restrict__ partials, int64_t parts,
                                          int64_t d, float* __restrict__ dweight) {
  MAXIMUS_GRID_STRIDE_LOOP(column, d) {
    double sum = 0.0;
    for (int64_t p = 0; p < parts; ++p) sum += partials[p * d + column];
    dweight[column] += static_cast<float>(sum);
  }
}

// One thread per (token, pair): the angle is formed once in float64 and
// applied to every head.
__global__ void RopeKernel(float* __restrict__ x, int64_t tokens, int64_t seq, int64_t heads,
                           int64_t head_dim, int64_t position_offset, double log_theta,
                           double sign) {
  const int64_t half = head_dim / 2;
  MAXIMUS_GRID_STRIDE_LOOP(task, tokens * half) {
    const int64_t i = task % half, token = task / half;
    const double position = static_cast<double>(position_offset + token % seq);
    const double inv_freq = exp(-2.0 * static_cast<double>(i) / head_dim * log_theta);
    double sin_angle, cos_angle;
    sincos(sign * position * inv_freq, &sin_angle, &cos_angle);
    const float c = static_cast<float>(cos_angle), s = static_cast<float>(sin_angle);
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (token * heads + h) * head_dim;
      const float a = v[i], b = v[i + half];
      v[i] = a * c - b * s;
      v[i + half] = b * c + a * s;
    }
  }
}

int64_t RowBlocks(int64_t rows) { return (rows + kRowsPerBlock - 1) / kRowsPerBlock; }

}  // namespace

int64_t RmsNormWorkspaceFloats(int64_t rows, int64_t d) {
  return (rows + kPartialRows - 1) / kPartialRows * d;
}

absl::Status RmsNormCuda(const float* x, const float* weight, int64_t rows, int64_t d, float eps,
                         float* out, float* rstd, cudaStream_t stream) {
  if (rows <= 0) return absl::OkStatus();
  RmsNormKernel<<<RowBlocks(rows), kRowsPerBlock * 32, 0, stream>>>(x, weight, rows, d, eps, out,
                                                                     rstd);
  return LaunchStatus("RmsNormKernel");
}

absl::Status RmsNormBackwardCuda(const float* x, const float* weight, const float* rstd,
                                 const float* dout, int64_t rows, int64_t d, float* dx,
                                 float* dweight, float* workspace, cudaStream_t stream) {
  if (rows <= 0) return absl::OkStatus();
  RmsNormBackwardKernel<<<RowBlocks(rows), kRowsPerBlock * 32, 0, stream>>>(x, weight, rstd, dout,
                                                                             rows, d, dx);
  if (auto status = LaunchStatus("RmsNormBackwardKernel"); !status.ok()) return status;
  const int64_t parts = (rows + kPartialRows - 1) / kPartialRows;
  const int columns = 128;
  const dim3 grid(static_cast<unsigned>((d + columns - 1) / columns), static_cast<unsigned>(parts));
  RmsNormWeightPartialsKernel<<<grid, columns, 0, stream>>>(x, rstd, dout, rows, d, workspace);
  if (auto status = LaunchStatus("RmsNormWeightPartialsKernel"); !status.ok()) return status;
  RmsNormWeightReduceKernel<<<GridFor(d), kThreads, 0, stream>>>(workspace, parts, d, dweight);
  return LaunchStatus("RmsNormWeightReduceKernel");
}

absl::Status RopeCuda(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                      int64_t position_offset, float theta, bool inverse, cudaStream_t stream) {
  const int64_t tokens = batch * seq;
  if (tokens <= 0 || head_dim < 2) return absl::OkStatus();
  RopeKernel<<<GridFor(tokens * (head_dim / 2)), kThreads, 0, stream>>>(
      x, tokens, seq, heads, head_dim, position_offset, std::log(static_cast<double>(theta)),
      inverse ? -1.0 : 1.0);
  return LaunchStatus("RopeKernel");
}

}  // namespace maximus::trainer::cuda
