// --backend: names checked, and what "auto" and "cuda" do without a usable
// GPU (MAXIMUS_DISABLE_GPU=1 makes any machine one).

#include "trainer/backend/select_backend.h"

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"

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

TEST_F(SelectBackendTest, CpuIsAlwaysThere) {
  std::string said;
  auto backend = MakeBackend("cpu", &said);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cpu");
  EXPECT_EQ(said, "backend: cpu");
  EXPECT_GT((*backend)->MemoryBytes(), uint64_t{1} << 20);
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

// A model with RandNLA layers stays on the CPU, GPU or not, and says why.
TEST_F(SelectBackendTest, RandnlaAttentionKeepsToTheCpu) {
  std::string said;
  auto backend = MakeBackend("auto", &said, /*randnla_attention=*/true);
  ASSERT_TRUE(backend.ok()) << backend.status();
  EXPECT_EQ((*backend)->name(), "cpu");
  EXPECT_TRUE((*backend)->SupportsRandnlaAttention());
  EXPECT_NE(said.find("RandNLA attention is not yet on the CUDA backend"), std::string::npos)
      << said;
  const absl::Status s = MakeBackend("cuda", nullptr, /*randnla_attention=*/true).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented) << s;
  EXPECT_NE(s.message().find("--backend=cpu"), std::string::npos) << s;
  EXPECT_TRUE(MakeBackend("cpu", nullptr, /*randnla_attention=*/true).ok());
}

}  // namespace
}  // namespace maximus::trainer
