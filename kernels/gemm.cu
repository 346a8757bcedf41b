#include <cublas_v2.h>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_status.h"
#include "kernels/gemm_cuda.h"

namespace maximus::kernels {
namespace {

cudaDataType_t CudaType(DType type) { return type == DType::kFloat32 ? CUDA_R_32F : CUDA_R_16BF; }

}  // namespace

absl::Status GemmCuda(cublasHandle_t handle, const GemmDims& dims, DType input_type,
                      DType output_type, float alpha, const void* a, const void* b, float beta,
                      void* c, GemmMath math) {
  MAXIMUS_RETURN_IF_ERROR(ValidateGemmDims(dims));
  if (handle == nullptr || a == nullptr || b == nullptr || c == nullptr) {
    return absl::InvalidArgumentError("GemmCuda: handle, a, b and c must be non-null");
  }
  if (input_type == DType::kFloat32 && output_type != DType::kFloat32) {
    return absl::InvalidArgumentError("GemmCuda: fp32 inputs need an fp32 output");
  }
  if (math == GemmMath::kTf32 && input_type != DType::kFloat32) {
    return absl::InvalidArgumentError("GemmCuda: tf32 math applies to fp32 inputs only");
  }
  // cuBLAS is column-major: a row-major C (m x n) is a column-major C^T, and
  // C^T = op(B)^T * op(A)^T, so B goes first and the transposes carry over.
  const int m = static_cast<int>(dims.m);
  const int n = static_cast<int>(dims.n);
  const int k = static_cast<int>(dims.k);
  const cublasOperation_t op_b = dims.transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_a = dims.transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const int ldb = static_cast<int>(dims.LeadingB());
  const int lda = static_cast<int>(dims.LeadingA());
  const int ldc = static_cast<int>(dims.LeadingC());
  const cublasComputeType_t compute =
      math == GemmMath::kTf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  MAXIMUS_CUBLAS_RETURN_IF_ERROR(cublasGemmEx(
      handle, op_b, op_a, n, m, k, &alpha, b, CudaType(input_type), ldb, a, CudaType(input_type),
      lda, &beta, c, CudaType(output_type), ldc, compute, CUBLAS_GEMM_DEFAULT));
  return absl::OkStatus();
}

}  // namespace maximus::kernels
