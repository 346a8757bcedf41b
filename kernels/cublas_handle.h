// An owned cuBLAS handle bound to one stream.

#ifndef MAXIMUS_KERNELS_CUBLAS_HANDLE_H_
#define MAXIMUS_KERNELS_CUBLAS_HANDLE_H_

#include <cublas_api.h>
#include <cuda_runtime_api.h>

#include "absl/status/statusor.h"

namespace maximus::kernels {

class CublasHandle {
 public:
  // Creates a handle issuing work on `stream` (0: the legacy default stream).
  static absl::StatusOr<CublasHandle> Create(cudaStream_t stream = nullptr);

  CublasHandle(const CublasHandle&) = delete;
  CublasHandle& operator=(const CublasHandle&) = delete;
  CublasHandle(CublasHandle&& other) noexcept;
  CublasHandle& operator=(CublasHandle&& other) noexcept;
  ~CublasHandle();

  cublasHandle_t get() const { return handle_; }

  // Issues later work on `stream`.
  absl::Status SetStream(cudaStream_t stream);

 private:
  explicit CublasHandle(cublasHandle_t handle) : handle_(handle) {}

  cublasHandle_t handle_ = nullptr;
};

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_CUBLAS_HANDLE_H_
