// Owned CUDA streams and events (move-only), for running independent work
// side by side within one operation.

#ifndef MAXIMUS_KERNELS_CUDA_STREAM_H_
#define MAXIMUS_KERNELS_CUDA_STREAM_H_

#include <cuda_runtime_api.h>

#include <utility>

#include "absl/status/statusor.h"
#include "kernels/cuda_status.h"

namespace maximus::kernels {

class CudaStream {
 public:
  CudaStream() = default;
  CudaStream(CudaStream&& other) noexcept : stream_(std::exchange(other.stream_, nullptr)) {}
  CudaStream& operator=(CudaStream&& other) noexcept {
    std::swap(stream_, other.stream_);
    return *this;
  }
  ~CudaStream() {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }

  // A stream that does not synchronise with the legacy default stream.
  static absl::StatusOr<CudaStream> Create() {
    CudaStream stream;
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&stream.stream_, cudaStreamNonBlocking));
    return stream;
  }

  cudaStream_t get() const { return stream_; }

 private:
  cudaStream_t stream_ = nullptr;
};

class CudaEvent {
 public:
  CudaEvent() = default;
  CudaEvent(CudaEvent&& other) noexcept : event_(std::exchange(other.event_, nullptr)) {}
  CudaEvent& operator=(CudaEvent&& other) noexcept {
    std::swap(event_, other.event_);
    return *this;
  }
  ~CudaEvent() {
    if (event_ != nullptr) cudaEventDestroy(event_);
  }

  // An event for ordering only (no timing).
  static absl::StatusOr<CudaEvent> Create() {
    CudaEvent event;
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&event.event_, cudaEventDisableTiming));
    return event;
  }

  cudaEvent_t get() const { return event_; }

 private:
  cudaEvent_t event_ = nullptr;
};

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_CUDA_STREAM_H_
