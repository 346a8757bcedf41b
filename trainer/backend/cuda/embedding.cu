// Embedding gathers and the deterministic scatter of their gradient.

#include <cub/device/device_radix_sort.cuh>

#include "trainer/backend/cuda/launch.cuh"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer::cuda {
namespace {

__global__ void EmbedKernel(const int32_t* __restrict__ ids, int64_t n,
                            const float* __restrict__ table, int64_t d, float scale,
                            float* __restrict__ out) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n * d) {
    const int64_t token = i / d;
    out[i] = scale * table[static_cast<int64_t>(ids[token]) * d + i % d];
  }
}

__global__ void IotaKernel(int32_t* out, int64_t n) {
  MAXIMUS_GRID_STRIDE_LOOP(i, n) out[i] = static_cast<int32_t>(i);
}

// Block (x, y): sorted entry x, columns [y * blockDim.x, ...). The first entry
// of each run of equal ids sums the run's rows in position order.
__global__ void ScatterSortedKernel(const int32_t* __restrict__ sorted_ids,
                                    const int32_t* __restrict__ sorted_positions, int64_t n,
                                    const float* __restrict__ dout, int64_t d, float scale,
                                    float* __restrict__ dtable) {
  const int64_t entry = blockIdx.x;
  const int32_t id = sorted_ids[entry];
  if (entry > 0 && sorted_ids[entry - 1] == id) return;
  const int64_t column = blockIdx.y * int64_t{blockDim.x} + threadIdx.x;
  if (column >= d) return;
  float sum = 0.0f;
  for (int64_t e = entry; e < n && sorted_ids[e] == id; ++e) {
    sum += dout[static_cast<int64_t>(sorted_positions[e]) * d + column];
  }
  dtable[static_cast<int64_t>(id) * d + column] += scale * sum;
}

__global__ void AddRowsKernel(const int32_t* __restrict__ ids, const float* __restrict__ rows,
                              int64_t count, int64_t d, float* __restrict__ table) {
  MAXIMUS_GRID_STRIDE_LOOP(i, count * d) {
    table[static_cast<int64_t>(ids[i / d]) * d + i % d] += rows[i];
  }
}

}  // namespace

absl::Status EmbedCuda(const int32_t* ids, int64_t n, const float* table, int64_t d, float scale,
                       float* out, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  EmbedKernel<<<GridFor(n * d), kThreads, 0, stream>>>(ids, n, table, d, scale, out);
  return LaunchStatus("EmbedKernel");
}

EmbeddingScatter::~EmbeddingScatter() {
  cudaFree(positions_in_);
  cudaFree(sorted_ids_);
  cudaFree(sorted_positions_);
  cudaFree(sort_temp_);
}

absl::Status EmbeddingScatter::Reserve(int64_t n) {
  if (n <= capacity_) return absl::OkStatus();
  if (n > int64_t{1} << 30) {
    return absl::InvalidArgumentError(absl::StrCat("embedding scatter of ", n, " tokens"));
  }
  cudaFree(positions_in_);
  cudaFree(sorted_ids_);
  cudaFree(sorted_positions_);
  cudaFree(sort_temp_);
  positions_in_ = sorted_ids_ = sorted_positions_ = nullptr;
  sort_temp_ = nullptr;
  capacity_ = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMalloc(&positions_in_, n * sizeof(int32_t)));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMalloc(&sorted_ids_, n * sizeof(int32_t)));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMalloc(&sorted_positions_, n * sizeof(int32_t)));
  sort_temp_bytes_ = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
      nullptr, sort_temp_bytes_, static_cast<const int32_t*>(nullptr),
      static_cast<int32_t*>(nullptr), static_cast<const int32_t*>(nullptr),
      static_cast<int32_t*>(nullptr), static_cast<int>(n)));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMalloc(&sort_temp_, sort_temp_bytes_));
  capacity_ = n;
  return absl::OkStatus();
}

absl::Status EmbeddingScatter::Run(const int32_t* ids, int64_t n, const float* dout, int64_t d,
                                   float scale, float* dtable, cudaStream_t stream) {
  if (n <= 0) return absl::OkStatus();
  if (auto status = Reserve(n); !status.ok()) return status;
  IotaKernel<<<GridFor(n), kThreads, 0, stream>>>(positions_in_, n);
  if (auto status = LaunchStatus("IotaKernel"); !status.ok()) return status;
  // Ids are non-negative (checked before upload), so their 31 low bits sort them.
  size_t temp_bytes = sort_temp_bytes_;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cub::DeviceRadixSort::SortPairs(
      sort_temp_, temp_bytes, ids, sorted_ids_, positions_in_, sorted_positions_,
      static_cast<int>(n), 0, 31, stream));
  const int columns_per_block = 128;
  const dim3 grid(static_cast<unsigned>(n),
                  static_cast<unsigned>((d + columns_per_block - 1) / columns_per_block));
  ScatterSortedKernel<<<grid, columns_per_block, 0, stream>>>(sorted_ids_, sorted_positions_, n,
                                                               dout, d, scale, dtable);
  return LaunchStatus("ScatterSortedKernel");
}

absl::Status AddRowsCuda(const int32_t* ids, const float* rows, int64_t count, int64_t d,
                         float* table, cudaStream_t stream) {
  if (count <= 0) return absl::OkStatus();
  AddRowsKernel<<<GridFor(count * d), kThreads, 0, stream>>>(ids, rows, count, d, table);
  return LaunchStatus("AddRowsKernel");
}

}  // namespace maximus::trainer::cuda
