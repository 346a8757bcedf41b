#include "kernels/cublas_handle.h"

#include <cublas_v2.h>

#include <utility>

#include "kernels/cuda_status.h"

namespace maximus::kernels {

absl::StatusOr<CublasHandle> CublasHandle::Create(cudaStream_t stream) {
  cublasHandle_t handle = nullptr;
  MAXIMUS_CUBLAS_RETURN_IF_ERROR(cublasCreate(&handle));
  CublasHandle owned(handle);
  MAXIMUS_CUBLAS_RETURN_IF_ERROR(cublasSetStream(handle, stream));
  return owned;
}

absl::Status CublasHandle::SetStream(cudaStream_t stream) {
  return CublasStatus(cublasSetStream(handle_, stream), "cublasSetStream");
}

CublasHandle::CublasHandle(CublasHandle&& other) noexcept
    : handle_(std::exchange(other.handle_, nullptr)) {}

CublasHandle& CublasHandle::operator=(CublasHandle&& other) noexcept {
  if (this != &other) {
    if (handle_ != nullptr) cublasDestroy(handle_);
    handle_ = std::exchange(other.handle_, nullptr);
  }
  return *this;
}

CublasHandle::~CublasHandle() {
  if (handle_ != nullptr) cublasDestroy(handle_);
}

}  // namespace maximus::kernels
