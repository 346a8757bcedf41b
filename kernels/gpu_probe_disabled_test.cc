// MAXIMUS_DISABLE_GPU=1 turns the GPU off for a process, GPU or not.

#include <cstdlib>

#include "gtest/gtest.h"
#include "kernels/gpu_probe.h"

namespace maximus::kernels {
namespace {

TEST(GpuProbeDisabledTest, EnvironmentVariableDisablesTheGpu) {
  ASSERT_EQ(setenv("MAXIMUS_DISABLE_GPU", "1", /*overwrite=*/1), 0);
  const absl::StatusOr<GpuInfo> gpu = ProbeGpu();
  ASSERT_FALSE(gpu.ok());
  EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_NE(gpu.status().message().find("MAXIMUS_DISABLE_GPU"), std::string::npos);
}

}  // namespace
}  // namespace maximus::kernels
