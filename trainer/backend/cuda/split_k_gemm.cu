// GEMMs with a small C and a long reduction (the weight gradients dW = dyᵀ x,
// reducing over every token): C has too few tiles to fill the GPU, so the
// reduction is cut into slices, each slice's product computed by one batched
// cuBLAS call into a workspace, and the slices summed in slice order
// (deterministic, no atomics).

#include <cublas_v2.h>

#include <algorithm>

#include "base/status_macros.h"
#include "trainer/backend/cuda/launch.cuh"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer::cuda {
namespace {

constexpr int64_t kTile = 128;           // cuBLAS's usual tile edge, for counting tiles.
constexpr int64_t kTargetTiles = 2 * 132;  // Two waves of an H200's multiprocessors.
constexpr int64_t kMinSliceK = 1024;
constexpr int64_t kMaxSlices = 16;

// c[i, j] = alpha * Σ_s slices[s, i, j] + beta * c[i, j] (c not read when beta = 0).
__global__ void SumSlicesKernel(const float* __restrict__ slices, int64_t count, int64_t m,
                                int64_t n, float alpha, float beta, float* __restrict__ c,
                                int64_t ldc) {
  MAXIMUS_GRID_STRIDE_LOOP(e, m * n) {
    float sum = 0.0f;
    for (int64_t s = 0; s < count; ++s) sum += slices[s * m * n + e];
    float* out = c + (e / n) * ldc + e % n;
    *out = beta == 0.0f ? alpha * sum : alpha * sum + beta * *out;
  }
}

}  // namespace

int64_t SplitKSlices(const kernels::GemmDims& dims) {
  const int64_t tiles = ((dims.m + kTile - 1) / kTile) * ((dims.n + kTile - 1) / kTile);
  if (tiles >= kTargetTiles / 2 || dims.k < 2 * kMinSliceK) return 1;
  const int64_t wanted = (kTargetTiles + tiles - 1) / tiles;
  return std::max<int64_t>(1, std::min({wanted, dims.k / kMinSliceK, kMaxSlices}));
}

absl::Status SplitKGemmCuda(cublasHandle_t handle, const kernels::GemmDims& dims, int64_t slices,
                            bool tf32, float alpha, const float* a, const float* b, float beta,
                            float* c, float* workspace, cudaStream_t stream) {
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateGemmDims(dims));
  const int64_t slice_k = dims.k / slices, rest = dims.k - slices * slice_k;
  const int64_t lda = dims.LeadingA(), ldb = dims.LeadingB();
  // Where slice s of the reduction starts in A (k x m stored when transposed)
  // and in B (k x n stored unless transposed).
  const int64_t a_step = dims.transpose_a ? slice_k * lda : slice_k;
  const int64_t b_step = dims.transpose_b ? slice_k : slice_k * ldb;
  const cublasComputeType_t compute = tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cublasOperation_t op_a = dims.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_b = dims.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const float one = 1.0f, zero = 0.0f;
  // Row-major C = op(A) op(B) is column-major Cᵀ = op(B)ᵀ op(A)ᵀ: B goes first.
  MAXIMUS_CUBLAS_RETURN_IF_ERROR(cublasGemmStridedBatchedEx(
      handle, op_b, op_a, static_cast<int>(dims.n), static_cast<int>(dims.m),
      static_cast<int>(slice_k), &one, b, CUDA_R_32F, static_cast<int>(ldb), b_step, a,
      CUDA_R_32F, static_cast<int>(lda), a_step, &zero, workspace, CUDA_R_32F,
      static_cast<int>(dims.n), dims.m * dims.n, static_cast<int>(slices), compute,
      CUBLAS_GEMM_DEFAULT));
  if (rest > 0) {
    // The last rows of the reduction join the first slice.
    MAXIMUS_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
        handle, op_b, op_a, static_cast<int>(dims.n), static_cast<int>(dims.m),
        static_cast<int>(rest), &one, b + slices * b_step, CUDA_R_32F, static_cast<int>(ldb),
        a + slices * a_step, CUDA_R_32F, static_cast<int>(lda), &one, workspace, CUDA_R_32F,
        static_cast<int>(dims.n), compute, CUBLAS_GEMM_DEFAULT));
  }
  SumSlicesKernel<<<GridFor(dims.m * dims.n), kThreads, 0, stream>>>(
      workspace, slices, dims.m, dims.n, alpha, beta, c, dims.LeadingC());
  return LaunchStatus("SumSlicesKernel");
}

}  // namespace maximus::trainer::cuda
