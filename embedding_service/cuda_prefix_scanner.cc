#include "embedding_service/cuda_prefix_scanner.h"

#include <cuda_runtime_api.h>

#include <utility>

#include "base/status_macros.h"
#include "kernels/cuda_status.h"
#include "kernels/gpu_probe.h"
#include "kernels/inner_product_scan_cuda.h"

namespace maximus::embedding {
namespace {

// Grows `buffer` to at least `size` elements (with room, so that a growing
// index does not reallocate on every change).
absl::Status Reserve(kernels::DeviceBuffer<float>* buffer, size_t size) {
  if (buffer->size() >= size) return absl::OkStatus();
  MAXIMUS_ASSIGN_OR_RETURN(*buffer, kernels::DeviceBuffer<float>::Allocate(size + size / 4));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaPrefixScanner>> CudaPrefixScanner::Create() {
  MAXIMUS_RETURN_IF_ERROR(kernels::ProbeGpu().status());
  MAXIMUS_ASSIGN_OR_RETURN(kernels::CublasHandle handle, kernels::CublasHandle::Create());
  return std::unique_ptr<CudaPrefixScanner>(new CudaPrefixScanner(std::move(handle)));
}

absl::Status CudaPrefixScanner::Scan(const float* matrix, int64_t rows, int64_t dims,
                                     uint64_t version, const float* query, float* scores) {
  absl::MutexLock lock(&mutex_);
  const size_t elements = static_cast<size_t>(rows * dims);
  if (!uploaded_ || version != version_) {
    uploaded_ = false;
    MAXIMUS_RETURN_IF_ERROR(Reserve(&matrix_, elements));
    MAXIMUS_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(matrix_.data(), matrix, elements * sizeof(float), cudaMemcpyHostToDevice));
    uploaded_ = true;
    version_ = version;
  }
  MAXIMUS_RETURN_IF_ERROR(Reserve(&query_, dims));
  MAXIMUS_RETURN_IF_ERROR(Reserve(&scores_, rows));
  MAXIMUS_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(query_.data(), query, dims * sizeof(float), cudaMemcpyHostToDevice));
  MAXIMUS_RETURN_IF_ERROR(kernels::InnerProductScanCuda(handle_.get(), query_.data(), 1, dims,
                                                        matrix_.data(), rows, dims,
                                                        scores_.data()));
  // On the legacy default stream: the copy waits for the GEMM.
  MAXIMUS_CUDA_RETURN_IF_ERROR(
      cudaMemcpy(scores, scores_.data(), rows * sizeof(float), cudaMemcpyDeviceToHost));
  return absl::OkStatus();
}

}  // namespace maximus::embedding
