// CUDA runtime and cuBLAS error codes as absl::Status, so GPU code reports
// failures the way the rest of Maximus does instead of aborting.

#ifndef MAXIMUS_KERNELS_CUDA_STATUS_H_
#define MAXIMUS_KERNELS_CUDA_STATUS_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace maximus::kernels {

// OK for cudaSuccess; otherwise an error naming `what` and CUDA's message.
absl::Status CudaStatus(cudaError_t error, absl::string_view what);

// OK for CUBLAS_STATUS_SUCCESS; otherwise an error naming `what`.
absl::Status CublasStatus(cublasStatus_t status, absl::string_view what);

}  // namespace maximus::kernels

#define MAXIMUS_CUDA_RETURN_IF_ERROR(expr)                                                   \
  do {                                                                                       \
    const absl::Status maximus_cuda_status_ = ::maximus::kernels::CudaStatus((expr), #expr); \
    if (!maximus_cuda_status_.ok()) return maximus_cuda_status_;                             \
  } while (0)

#define MAXIMUS_CUBLAS_RETURN_IF_ERROR(expr)                                                     \
  do {                                                                                           \
    const absl::Status maximus_cublas_status_ = ::maximus::kernels::CublasStatus((expr), #expr); \
    if (!maximus_cublas_status_.ok()) return maximus_cublas_status_;                             \
  } while (0)

#endif  // MAXIMUS_KERNELS_CUDA_STATUS_H_
