// General matrix multiply, C = alpha * op(A) * op(B) + beta * C, row-major.
//
// The CPU reference (fp32, OpenBLAS) is in gemm.cc; the CUDA version (bf16 or
// fp32 inputs, fp32 accumulation, cuBLAS) is declared in gemm_cuda.h and
// defined in gemm.cu. gemm_test.cc checks the reference against a float64
// triple loop, gemm_cuda_test.cc the CUDA version against the reference.

#ifndef MAXIMUS_KERNELS_GEMM_H_
#define MAXIMUS_KERNELS_GEMM_H_

#include <cstdint>

#include "absl/status/status.h"

namespace maximus::kernels {

struct GemmDims {
  int64_t m = 0;             // Rows of op(A) and C.
  int64_t n = 0;             // Columns of op(B) and C.
  int64_t k = 0;             // Columns of op(A), rows of op(B).
  bool transpose_a = false;  // A is stored k x m when set, m x k otherwise.
  bool transpose_b = false;  // B is stored n x k when set, k x n otherwise.
  // Leading dimensions (elements between consecutive stored rows); 0 means
  // packed: the stored row length. Lets a GEMM read a column slice, such as
  // the first 64 dimensions of each hidden vector.
  int64_t lda = 0;
  int64_t ldb = 0;
  int64_t ldc = 0;

  double Flops() const { return 2.0 * m * n * k; }
  int64_t LeadingA() const { return lda != 0 ? lda : (transpose_a ? m : k); }
  int64_t LeadingB() const { return ldb != 0 ? ldb : (transpose_b ? k : n); }
  int64_t LeadingC() const { return ldc != 0 ? ldc : n; }
};

// INVALID_ARGUMENT naming the field unless m, n and k are positive, fit the
// 32-bit sizes cuBLAS takes, and each leading dimension is at least its
// stored row length.
absl::Status ValidateGemmDims(const GemmDims& dims);

// CPU reference in fp32: C = alpha * op(A) * op(B) + beta * C.
absl::Status Gemm(const GemmDims& dims, float alpha, const float* a, const float* b, float beta,
                  float* c);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_GEMM_H_
