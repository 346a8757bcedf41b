// --backend: names checked, and what "auto" and "cuda" do without a usable
// GPU (MAXIMUS_DISABLE_GPU=1 makes any machine one).

#include "trainer/backend/select_backend.h"

#include <cstdlib>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "gtest/gtest.h"

ABSL_DECLARE_FLAG(std::string, gpu_precision);

namespace maximus::trainer {
namespace {

class SelectBackendTest : public ::testing::Test {
 protected:
  // Before the first probe, which the process caches.
  static void SetUpTestSuite() { ASSERT_EQ(setenv("MAXIMUS_DISABLE_GPU", "1", 1), 0); }
};

TEST_F(SelectBackendTest, UnknownNamesAreRefusedByFlag) {
  for (const char* name : {"", "gpu", "CPU", "cuda "}) {
    const absl::Status s = ValidateBackendName(name);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(s.message().find("--backend="), std::string::npos) << s;
    EXPECT_NE(s.message().find("auto, cpu or cuda"), std::string::npos) << s;
    EXPECT_EQ(MakeBackend(name).status().code(), absl::StatusCode::kInvalidArgument) << name;
  }
  for (const char* name : {"auto", "cpu", "cuda"}) EXPECT_TRUE(ValidateBackendName(name).ok());
}

TEST_F(SelectBackendTest, UnknownGpuPrecisionIsRefusedByFlag) {
  for (const char* precision : {"fp16", "", "BF16"}) {
    absl::SetFlag(&FLAGS_gpu_precision, precision);
    const absl::Status s = MakeBackend("cpu").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << precision;
    EXPECT_NE(s.message().find("--gpu_precision="), std::string::npos) << s;
  }
  for (const char* precision : {"bf16", "tf32"}) {
    absl::SetFlag(&FLAGS_gpu_precision, precision);
    EXPECT_TRUE(MakeBackend("cpu").ok()) << precision;
  }
  absl::SetFlag(&FLAGS_gpu_precision, "bf16");
}

TEST_F(SelectBackendTest, CpuIsAlwaysThere) {
  std::string said;
  auto backend = MakeBackend("cpu", &said);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cpu");
  EXPECT_EQ(said, "backend: cpu");
  EXPECT_GT((*backend)->MemoryBytes(), uint64_t{1} << 20);
  EXPECT_EQ((*backend)->NativeStream(), nullptr);
  // The device is the GPU backend's alone.
  auto on_device_3 = MakeBackend("cpu", &said, 3);
  ASSERT_TRUE(on_device_3.ok()) << on_device_3.status();
  EXPECT_EQ((*on_device_3)->name(), "cpu");
}

TEST_F(SelectBackendTest, AutoFallsBackToTheCpuAndSaysWhy) {
  std::string said;
  auto backend = MakeBackend("auto", &said);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cpu");
  EXPECT_NE(said.find("no usable GPU"), std::string::npos) << said;
  EXPECT_NE(said.find("MAXIMUS_DISABLE_GPU"), std::string::npos) << said;
}

TEST_F(SelectBackendTest, CudaWithoutAGpuIsUnavailableWithTheReason) {
  const absl::Status s = MakeBackend("cuda").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("--backend=cuda: no usable GPU"), std::string::npos) << s;
}

// A model with RandNLA layers needs nothing of the choice: auto (the CPU
// here) and cpu both run it, and so does the CUDA backend (cuda_step_test).
TEST_F(SelectBackendTest, RandnlaAttentionRunsWhereverAutoPoints) {
  auto backend = MakeBackend("auto");
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_TRUE((*backend)->SupportsRandnlaAttention()) << (*backend)->name();
  auto cpu = MakeBackend("cpu");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_TRUE((*cpu)->SupportsRandnlaAttention());
}

}  // namespace
}  // namespace maximus::trainer
