// Test helpers for device memory: copies that fail the test on error, and
// poisoned buffers that show any element a kernel failed to write.

#ifndef MAXIMUS_KERNELS_DEVICE_TEST_UTIL_H_
#define MAXIMUS_KERNELS_DEVICE_TEST_UTIL_H_

#include <cstddef>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_buffer.h"

namespace maximus::kernels::testing {

template <typename T>
std::vector<T> Download(const DeviceBuffer<T>& buffer) {
  if (buffer.size() == 0) return {};
  auto host = buffer.ToHost();
  EXPECT_TRUE(host.ok()) << host.status();
  return host.ok() ? *std::move(host) : std::vector<T>();
}

template <typename T>
DeviceBuffer<T> Upload(const std::vector<T>& host) {
  auto buffer = DeviceBuffer<T>::FromHost(host);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  return buffer.ok() ? *std::move(buffer) : DeviceBuffer<T>();
}

// `n` elements with every byte 0xff: NaN as float (and bf16), −1 as int32.
template <typename T = float>
DeviceBuffer<T> Poisoned(size_t n) {
  auto buffer = DeviceBuffer<T>::Allocate(n);
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  if (!buffer.ok()) return DeviceBuffer<T>();
  if (n > 0) {
    EXPECT_TRUE(buffer->FillBytes(0xff).ok());
  }
  return *std::move(buffer);
}

}  // namespace maximus::kernels::testing

#endif  // MAXIMUS_KERNELS_DEVICE_TEST_UTIL_H_
