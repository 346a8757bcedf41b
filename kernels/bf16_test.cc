#include "kernels/bf16.h"

#include <cmath>
#include <limits>

#include "gtest/gtest.h"

namespace maximus::kernels {
namespace {

float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

TEST(Bf16Test, ExactValuesRoundTrip) {
  for (float value : {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, -0.0f, 65536.0f}) {
    EXPECT_EQ(Bf16ToFloat(FloatToBf16(value)), value) << value;
  }
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
}

TEST(Bf16Test, RoundsToNearestTiesToEven) {
  // Exactly half-way between 0x3f80 and 0x3f81: even (0x3f80) wins.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808000u)), 0x3f80);
  // Half-way between 0x3f81 and 0x3f82: even (0x3f82) wins.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f818000u)), 0x3f82);
  // Just above half-way rounds up.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f808001u)), 0x3f81);
  // Just below half-way rounds down.
  EXPECT_EQ(FloatToBf16(FromBits(0x3f807fffu)), 0x3f80);
}

TEST(Bf16Test, SpecialValues) {
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::quiet_NaN()))));
  // A NaN whose payload sits in the low bits must not round to infinity.
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(FromBits(0x7f800001u)))));
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::infinity())),
            std::numeric_limits<float>::infinity());
  // The largest float rounds up to infinity in bf16.
  EXPECT_EQ(Bf16ToFloat(FloatToBf16(std::numeric_limits<float>::max())),
            std::numeric_limits<float>::infinity());
}

TEST(Bf16Test, RelativeRoundingErrorIsBounded) {
  for (float value = 1e-30f; value < 1e30f; value *= 1.37f) {
    const float rounded = Bf16ToFloat(FloatToBf16(value));
    EXPECT_LE(std::fabs(rounded - value), std::ldexp(std::fabs(value), -8)) << value;
  }
}

}  // namespace
}  // namespace maximus::kernels
