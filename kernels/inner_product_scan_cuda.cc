#include "kernels/inner_product_scan_cuda.h"

#include "kernels/gemm_cuda.h"

namespace maximus::kernels {

absl::Status InnerProductScanCuda(cublasHandle_t handle, const float* queries,
                                  int64_t num_queries, int64_t dims, const float* rows, int64_t n,
                                  int64_t stride, float* out) {
  // out [num_queries x n] = queries [num_queries x dims] * rows^T, rows read
  // as n x dims with leading dimension `stride`.
  GemmDims gemm;
  gemm.m = num_queries;
  gemm.n = n;
  gemm.k = dims;
  gemm.transpose_b = true;
  gemm.lda = dims;
  gemm.ldb = stride;
  gemm.ldc = n;
  return GemmCuda(handle, gemm, DType::kFloat32, DType::kFloat32, 1.0f, queries, rows, 0.0f, out);
}

}  // namespace maximus::kernels
