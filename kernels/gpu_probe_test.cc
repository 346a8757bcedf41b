#include "kernels/gpu_probe.h"

#include <cstdlib>

#include "gtest/gtest.h"

namespace maximus::kernels {
namespace {

// Either answer is legitimate; what is checked is that the probe answers
// without crashing, explains a "no", and describes a "yes" fully.
TEST(GpuProbeTest, AnswersWithAReasonOrADescription) {
  const absl::StatusOr<GpuInfo> gpu = ProbeGpu();
  if (!gpu.ok()) {
    EXPECT_EQ(gpu.status().code(), absl::StatusCode::kUnavailable) << gpu.status();
    EXPECT_FALSE(gpu.status().message().empty());
    std::printf("no usable GPU: %s\n", std::string(gpu.status().message()).c_str());
    return;
  }
  EXPECT_FALSE(gpu->name.empty());
  EXPECT_GE(gpu->compute_capability_major, 9);
  EXPECT_GT(gpu->multiprocessors, 0);
  EXPECT_GT(gpu->global_memory_bytes, 0);
  std::printf("GPU: %s\n", gpu->ToString().c_str());
}

TEST(GpuProbeTest, CachesItsAnswer) { EXPECT_EQ(ProbeGpu().ok(), ProbeGpu().ok()); }

}  // namespace
}  // namespace maximus::kernels
