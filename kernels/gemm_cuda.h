// General matrix multiply on the GPU through cuBLAS, on the GemmDims of
// gemm.h (whose CPU reference it is checked against in gemm_cuda_test.cc).

#ifndef MAXIMUS_KERNELS_GEMM_CUDA_H_
#define MAXIMUS_KERNELS_GEMM_CUDA_H_

#include <cublas_api.h>

#include "absl/status/status.h"
#include "kernels/dtype.h"
#include "kernels/gemm.h"

namespace maximus::kernels {

enum class GemmMath {
  kFloat32,  // Full fp32 multiply-adds (fp32 inputs).
  kTf32,     // fp32 inputs rounded to tf32 on the tensor cores: faster, ~1e-3 relative error.
};

// CUDA version on device pointers, asynchronous on the handle's stream.
// Inputs are `input_type` (bf16 or fp32), C is `output_type`; products
// accumulate in fp32. bf16 inputs may write bf16 or fp32 C; fp32 inputs write
// fp32 C. With beta = 0, C is not read.
absl::Status GemmCuda(cublasHandle_t handle, const GemmDims& dims, DType input_type,
                      DType output_type, float alpha, const void* a, const void* b, float beta,
                      void* c, GemmMath math = GemmMath::kFloat32);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_GEMM_CUDA_H_
