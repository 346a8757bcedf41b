// The AVX2 scans against their plain references on random inputs, and the
// fp16 conversion against the F16C instructions.

#include "kernels/inner_product_scan.h"

#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/fp16.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

struct Shape {
  int64_t n, dims, stride;
};

// Row counts around the four-row blocks, dims around the eight-lane chunks,
// prefixes of longer rows.
const Shape kShapes[] = {{1, 1, 1},     {3, 7, 7},     {4, 8, 8},      {5, 9, 9},
                         {17, 64, 64},  {33, 64, 640}, {130, 640, 640}, {1001, 128, 640},
                         {7, 100, 131}, {2, 15, 16}};

// Rows of type Row (rounded from random normals by `round`), the scan
// against its reference: fp32 accumulation of `dims` products against one
// rounding of a double sum.
template <typename Row, typename Round, typename Fn>
void ExpectScanMatchesReference(Round round, Fn scan, Fn reference) {
  for (const Shape& s : kShapes) {
    const std::vector<float> query = RandomNormal(s.dims, 1);
    const std::vector<float> values = RandomNormal(s.n * s.stride, 2);
    std::vector<Row> rows(values.size());
    for (size_t i = 0; i < values.size(); ++i) rows[i] = round(values[i]);
    std::vector<float> out(s.n), ref(s.n);
    scan(query.data(), s.dims, rows.data(), s.n, s.stride, out.data());
    reference(query.data(), s.dims, rows.data(), s.n, s.stride, ref.data());
    EXPECT_LT(RelativeError(out, ref), 1e-6 * std::sqrt(static_cast<double>(s.dims)) + 1e-7)
        << s.n << " x " << s.dims << " stride " << s.stride;
  }
}

TEST(InnerProductScanTest, Fp32MatchesReference) {
  ExpectScanMatchesReference<float>([](float x) { return x; }, InnerProductScan,
                                    InnerProductScanReference);
}

TEST(InnerProductScanTest, Fp16MatchesReference) {
  ExpectScanMatchesReference<Fp16Bits>(FloatToFp16, InnerProductScanFp16,
                                       InnerProductScanFp16Reference);
}

TEST(InnerProductScanTest, CpuOfTheBuildMachineHasAvx2) {
  // Not a requirement of the code (it falls back to the reference), but the
  // tests above only compare two implementations where the CPU has AVX2.
  if (!CpuHasAvx2()) GTEST_SKIP() << "this CPU lacks AVX2/FMA/F16C: only the reference runs";
  SUCCEED();
}

__attribute__((target("f16c"))) Fp16Bits HardwareFloatToFp16(float x) {
  return static_cast<Fp16Bits>(_cvtss_sh(x, _MM_FROUND_TO_NEAREST_INT));
}
__attribute__((target("f16c"))) float HardwareFp16ToFloat(Fp16Bits x) { return _cvtsh_ss(x); }

TEST(Fp16Test, ConversionsMatchF16c) {
  if (!CpuHasAvx2()) GTEST_SKIP() << "this CPU lacks F16C";
  // Every half value round-trips, and converts like the hardware.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const float hardware = HardwareFp16ToFloat(static_cast<Fp16Bits>(h));
    const float ours = Fp16ToFloat(static_cast<Fp16Bits>(h));
    if (std::isnan(hardware)) {
      ASSERT_TRUE(std::isnan(ours)) << h;
      continue;
    }
    ASSERT_EQ(hardware, ours) << h;
    ASSERT_EQ(FloatToFp16(ours), h) << h;
  }
  // Floats of every magnitude, ties included.
  std::vector<float> floats = RandomNormal(200000, 5, 1000.0f);
  for (float f : RandomNormal(100000, 6, 1e-5f)) floats.push_back(f);
  for (float f : {65504.0f, 65519.0f, 65520.0f, 1e9f, 6.1035156e-05f, 5.9604645e-08f,
                  2.9802322e-08f, 8.940697e-08f, 1.0009765625f + 0.00048828125f,
                  std::numeric_limits<float>::infinity(), -0.0f, 0.0f}) {
    floats.push_back(f);
    floats.push_back(-f);
  }
  for (float f : floats) ASSERT_EQ(FloatToFp16(f), HardwareFloatToFp16(f)) << f;
  EXPECT_EQ(FloatToFp16(std::numeric_limits<float>::quiet_NaN()) & 0x7e00, 0x7e00);
}

}  // namespace
}  // namespace maximus::kernels
