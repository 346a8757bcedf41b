// The counter-based normal generator: statistics of the CPU reference, and
// the CUDA version against it.

#include <cmath>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/device_buffer.h"
#include "kernels/gpu_test_util.h"
#include "kernels/random_cuda.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

TEST(RandomTest, MomentsAreStandardNormal) {
  constexpr int kCount = 1 << 20;
  std::vector<float> values(kCount);
  FillNormal(values.data(), kCount, 42, 1.0f);
  double sum = 0, sum_sq = 0, sum_4 = 0;
  for (float v : values) {
    sum += v;
    sum_sq += v * v;
    sum_4 += double(v) * v * v * v;
  }
  // Standard errors at 2^20 samples: mean 1e-3, variance 1.4e-3, kurtosis ~5e-3.
  EXPECT_NEAR(sum / kCount, 0.0, 5e-3);
  EXPECT_NEAR(sum_sq / kCount, 1.0, 7e-3);
  EXPECT_NEAR(sum_4 / kCount, 3.0, 0.05);
}

TEST(RandomTest, ValuesDependOnlyOnSeedAndIndex) {
  std::vector<float> whole(1000), tail(400), other(1000);
  FillNormal(whole.data(), 1000, 7, 0.5f);
  FillNormal(tail.data(), 400, 7, 0.5f, /*offset=*/600);
  FillNormal(other.data(), 1000, 8, 0.5f);
  for (int i = 0; i < 400; ++i) ASSERT_EQ(whole[600 + i], tail[i]);
  int same = 0;
  for (int i = 0; i < 1000; ++i) same += whole[i] == other[i];
  EXPECT_LT(same, 5);
}

TEST(RandomCudaTest, MatchesCpuReference) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  constexpr int64_t kCount = 3'000'001;
  std::vector<float> want(kCount);
  FillNormal(want.data(), kCount, 11, 0.02f, 5);
  auto out = *DeviceBuffer<float>::Allocate(kCount);
  ASSERT_TRUE(out.FillBytes(0xff).ok());
  ASSERT_TRUE(FillNormalCuda(out.data(), kCount, 11, 0.02f, 5).ok());
  EXPECT_LT(testing::RelativeError(*out.ToHost(), want), 1e-5);
  auto out16 = *DeviceBuffer<Bf16Bits>::Allocate(kCount);
  ASSERT_TRUE(FillNormalCuda(out16.data(), kCount, 11, 0.02f, 5).ok());
  EXPECT_LT(testing::RelativeError(FromBf16(*out16.ToHost()), want), 4e-3);
}

}  // namespace
}  // namespace maximus::kernels
