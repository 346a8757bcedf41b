// An owned, typed allocation of device memory (cudaMalloc), with copies to and
// from host vectors. Move-only; freed on destruction.

#ifndef MAXIMUS_KERNELS_DEVICE_BUFFER_H_
#define MAXIMUS_KERNELS_DEVICE_BUFFER_H_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cuda_status.h"

namespace maximus::kernels {

template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
    if (this != &other) {
      Reset();
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { Reset(); }

  // Allocates `size` elements (uninitialised).
  static absl::StatusOr<DeviceBuffer> Allocate(size_t size) {
    DeviceBuffer buffer;
    if (size > 0) {
      MAXIMUS_CUDA_RETURN_IF_ERROR(
          cudaMalloc(reinterpret_cast<void**>(&buffer.data_), size * sizeof(T)));
    }
    buffer.size_ = size;
    return buffer;
  }

  // Allocates and fills with a copy of `host`.
  static absl::StatusOr<DeviceBuffer> FromHost(const std::vector<T>& host) {
    MAXIMUS_ASSIGN_OR_RETURN(DeviceBuffer buffer, Allocate(host.size()));
    MAXIMUS_RETURN_IF_ERROR(buffer.CopyFromHost(host));
    return buffer;
  }

  absl::Status CopyFromHost(const std::vector<T>& host) {
    if (host.size() != size_) {
      return absl::InvalidArgumentError(
          absl::StrCat("host vector has ", host.size(), " elements, buffer ", size_));
    }
    return CudaStatus(cudaMemcpy(data_, host.data(), size_ * sizeof(T), cudaMemcpyHostToDevice),
                      "cudaMemcpy to device");
  }

  absl::StatusOr<std::vector<T>> ToHost() const {
    std::vector<T> host(size_);
    MAXIMUS_CUDA_RETURN_IF_ERROR(
        cudaMemcpy(host.data(), data_, size_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }

  // Sets every byte to `byte` (0xff makes float and bf16 elements NaN: a
  // poison that shows any element a kernel failed to write).
  absl::Status FillBytes(int byte) {
    return CudaStatus(cudaMemset(data_, byte, size_ * sizeof(T)), "cudaMemset");
  }

  T* data() { return data_; }
  const T* data() const { return data_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void Reset() {
    if (data_ != nullptr) cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }

  T* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_DEVICE_BUFFER_H_
