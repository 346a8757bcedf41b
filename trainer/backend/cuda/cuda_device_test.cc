// The backend's device choice (CudaBackend::Options::device), which the
// ranks of a data-parallel run on one host rely on: each backend allocates
// and runs on its own GPU, and a device that does not exist is refused with
// how many do.

#include <cuda_runtime_api.h>

#include <memory>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/gpu_test_util.h"
#include "trainer/backend/cuda/cuda_backend.h"

namespace maximus::trainer {
namespace {

TEST(CudaDeviceTest, MissingDeviceIsRefusedWithTheCount) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  for (const int device : {count, -1}) {
    CudaBackend::Options options;
    options.device = device;
    const auto backend = CudaBackend::Create(options);
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kInvalidArgument) << backend.status();
    EXPECT_TRUE(absl::StrContains(backend.status().message(),
                                  absl::StrCat("device ", device, " does not exist: ", count)))
        << backend.status();
  }
}

// The last device (device 0 where there is one): current on the thread
// that created the backend, and the one its stream and memory are on.
TEST(CudaDeviceTest, RunsOnItsDevice) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  int count = 0;
  ASSERT_EQ(cudaGetDeviceCount(&count), cudaSuccess);
  CudaBackend::Options options;
  options.device = count - 1;
  auto backend = CudaBackend::Create(options);
  ASSERT_TRUE(backend.ok()) << backend.status();
  int current = -1;
  ASSERT_EQ(cudaGetDevice(&current), cudaSuccess);
  EXPECT_EQ(current, options.device);

  auto stream = static_cast<cudaStream_t>((*backend)->NativeStream());
  ASSERT_NE(stream, nullptr);
  int stream_device = -1;
  ASSERT_EQ(cudaStreamGetDevice(stream, &stream_device), cudaSuccess);
  EXPECT_EQ(stream_device, options.device);

  std::unique_ptr<Buffer> buffer = (*backend)->Allocate(5);
  cudaPointerAttributes attributes;
  ASSERT_EQ(cudaPointerGetAttributes(&attributes, buffer->raw()), cudaSuccess);
  EXPECT_EQ(attributes.device, options.device);
  (*backend)->Fill(buffer->data(), 5, 2.5f);
  std::vector<float> host(5);
  (*backend)->CopyToHost(buffer->data(), 5, host.data());
  EXPECT_EQ(host, std::vector<float>(5, 2.5f));
  EXPECT_TRUE((*backend)->Synchronize().ok());
}

}  // namespace
}  // namespace maximus::trainer
