// Stage 1 of vector search on the GPU: the inner products of a batch of
// queries with every stored row in one fp32 cuBLAS GEMM,
//   out[q * n + i] = sum_{j < dims} queries[q * dims + j] * rows[i * stride + j],
// the sums of InnerProductScanReference (inner_product_scan.h), against which
// inner_product_scan_cuda_test checks it. Device pointers; asynchronous on
// the handle's stream.

#ifndef MAXIMUS_KERNELS_INNER_PRODUCT_SCAN_CUDA_H_
#define MAXIMUS_KERNELS_INNER_PRODUCT_SCAN_CUDA_H_

#include <cublas_api.h>

#include <cstdint>

#include "absl/status/status.h"

namespace maximus::kernels {

absl::Status InnerProductScanCuda(cublasHandle_t handle, const float* queries,
                                  int64_t num_queries, int64_t dims, const float* rows, int64_t n,
                                  int64_t stride, float* out);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_INNER_PRODUCT_SCAN_CUDA_H_
