// The CUDA fp32 <-> bf16 casts against the CPU reference, bit for bit.

#include "kernels/cast_cuda.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kernels/bf16.h"
#include "kernels/device_buffer.h"
#include "kernels/gpu_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

std::vector<float> InputsWithEdgeCases() {
  std::vector<float> values = testing::RandomNormal(1 << 20, 7, 1000.0f);
  for (uint32_t bits : {0x3f808000u, 0x3f818000u, 0x3f807fffu, 0x00000001u, 0x807fffffu,
                        0x7f7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x7f800001u}) {
    float f;
    std::memcpy(&f, &bits, sizeof(f));
    values.push_back(f);
  }
  values.push_back(0.0f);
  values.push_back(-0.0f);
  return values;
}

TEST(CastCudaTest, FloatToBf16MatchesReferenceBitForBit) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const std::vector<float> input = InputsWithEdgeCases();
  auto in = DeviceBuffer<float>::FromHost(input);
  auto out = DeviceBuffer<Bf16Bits>::Allocate(input.size());
  ASSERT_TRUE(in.ok() && out.ok());
  ASSERT_TRUE(out->FillBytes(0xab).ok());
  ASSERT_TRUE(CastFloatToBf16Cuda(in->data(), out->data(), input.size()).ok());
  const std::vector<Bf16Bits> got = *out->ToHost();
  int mismatches = 0;
  for (size_t i = 0; i < input.size(); ++i) {
    const Bf16Bits want = FloatToBf16(input[i]);
    const bool both_nan = std::isnan(Bf16ToFloat(want)) && std::isnan(Bf16ToFloat(got[i]));
    if (got[i] != want && !both_nan && ++mismatches <= 5) {
      ADD_FAILURE() << "element " << i << " (" << input[i] << "): got 0x" << std::hex << got[i]
                    << ", want 0x" << want;
    }
  }
  EXPECT_EQ(mismatches, 0);
}

// The 4-wide path takes aligned starts; other starts and the count % 4 tail
// go scalar. Every split gives the reference's bits and writes nothing past
// the count.
TEST(CastCudaTest, FloatToBf16AnyOffsetAndTail) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  const std::vector<float> input = InputsWithEdgeCases();
  auto in = DeviceBuffer<float>::FromHost(input);
  auto out = DeviceBuffer<Bf16Bits>::Allocate(input.size());
  ASSERT_TRUE(in.ok() && out.ok());
  for (int64_t offset : {0, 1, 2, 3, 4}) {
    for (int64_t count : {int64_t{0}, int64_t{3}, int64_t{5}, int64_t{1001}}) {
      SCOPED_TRACE(absl::StrCat("offset ", offset, " count ", count));
      ASSERT_TRUE(out->FillBytes(0xab).ok());
      const int64_t start = static_cast<int64_t>(input.size()) - 1100 + offset;
      ASSERT_TRUE(
          CastFloatToBf16Cuda(in->data() + start, out->data() + offset, count).ok());
      const std::vector<Bf16Bits> got = *out->ToHost();
      for (int64_t i = 0; i < offset + count + 8 && i < static_cast<int64_t>(got.size()); ++i) {
        const bool written = i >= offset && i < offset + count;
        const Bf16Bits want = written ? FloatToBf16(input[start + i - offset]) : Bf16Bits{0xabab};
        const bool both_nan = written && std::isnan(Bf16ToFloat(want)) &&
                              std::isnan(Bf16ToFloat(got[i]));
        ASSERT_TRUE(got[i] == want || both_nan) << "element " << i;
      }
    }
  }
}

TEST(CastCudaTest, Bf16ToFloatIsExact) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  std::vector<Bf16Bits> input(1 << 16);
  for (size_t i = 0; i < input.size(); ++i) input[i] = static_cast<Bf16Bits>(i);
  auto in = DeviceBuffer<Bf16Bits>::FromHost(input);
  auto out = DeviceBuffer<float>::Allocate(input.size());
  ASSERT_TRUE(in.ok() && out.ok());
  ASSERT_TRUE(CastBf16ToFloatCuda(in->data(), out->data(), input.size()).ok());
  const std::vector<float> got = *out->ToHost();
  for (size_t i = 0; i < input.size(); ++i) {
    const float want = Bf16ToFloat(input[i]);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got[i])) << i;
    } else {
      ASSERT_EQ(std::memcmp(&got[i], &want, sizeof(float)), 0) << "bits 0x" << std::hex << i;
    }
  }
}

TEST(CastCudaTest, RejectsNegativeCount) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  EXPECT_EQ(CastFloatToBf16Cuda(nullptr, nullptr, -1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(CastFloatToBf16Cuda(nullptr, nullptr, 0).ok());
}

}  // namespace
}  // namespace maximus::kernels
