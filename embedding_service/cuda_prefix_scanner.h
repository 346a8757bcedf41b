// Stage 1 of coarse-to-fine search on the GPU: keeps a copy of the index's
// 64-dimensional prefix matrix in GPU memory (refreshed when the index has
// changed since the last search) and scores each query against it with one
// cuBLAS GEMM (kernels/inner_product_scan_cuda.h). Searches take turns on
// the one stream; the scores come back to the host, which picks the
// candidates and reranks them.

#ifndef MAXIMUS_EMBEDDING_SERVICE_CUDA_PREFIX_SCANNER_H_
#define MAXIMUS_EMBEDDING_SERVICE_CUDA_PREFIX_SCANNER_H_

#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "embedding_service/vector_index.h"
#include "kernels/cublas_handle.h"
#include "kernels/device_buffer.h"

namespace maximus::embedding {

class CudaPrefixScanner final : public PrefixScanner {
 public:
  // UNAVAILABLE with the reason where no GPU is usable.
  static absl::StatusOr<std::unique_ptr<CudaPrefixScanner>> Create();

  absl::Status Scan(const float* matrix, int64_t rows, int64_t dims, uint64_t version,
                    const float* query, float* scores) override ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  explicit CudaPrefixScanner(kernels::CublasHandle handle) : handle_(std::move(handle)) {}

  absl::Mutex mutex_;
  kernels::CublasHandle handle_ ABSL_GUARDED_BY(mutex_);
  kernels::DeviceBuffer<float> matrix_ ABSL_GUARDED_BY(mutex_);
  kernels::DeviceBuffer<float> query_ ABSL_GUARDED_BY(mutex_);
  kernels::DeviceBuffer<float> scores_ ABSL_GUARDED_BY(mutex_);
  bool uploaded_ ABSL_GUARDED_BY(mutex_) = false;
  uint64_t version_ ABSL_GUARDED_BY(mutex_) = 0;
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_CUDA_PREFIX_SCANNER_H_
