// The CPU reference GEMM against a float64 triple loop.

#include "kernels/gemm.h"

#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

// C = alpha * op(A) * op(B) + beta * C in float64, straight from the definition.
std::vector<double> NaiveGemm(const GemmDims& d, double alpha, const std::vector<float>& a,
                              const std::vector<float>& b, double beta,
                              const std::vector<float>& c) {
  std::vector<double> out(d.m * d.n);
  for (int64_t i = 0; i < d.m; ++i) {
    for (int64_t j = 0; j < d.n; ++j) {
      double sum = 0.0;
      for (int64_t p = 0; p < d.k; ++p) {
        const double av = d.transpose_a ? a[p * d.LeadingA() + i] : a[i * d.LeadingA() + p];
        const double bv = d.transpose_b ? b[j * d.LeadingB() + p] : b[p * d.LeadingB() + j];
        sum += av * bv;
      }
      out[i * d.n + j] = alpha * sum + beta * c[i * d.LeadingC() + j];
    }
  }
  return out;
}

struct Case {
  int64_t m, n, k;
};

class GemmReferenceTest : public ::testing::TestWithParam<std::tuple<Case, bool, bool>> {};

TEST_P(GemmReferenceTest, MatchesFloat64Definition) {
  const auto [shape, transpose_a, transpose_b] = GetParam();
  const GemmDims dims{shape.m, shape.n, shape.k, transpose_a, transpose_b};
  const std::vector<float> a = RandomNormal(dims.m * dims.k, 1);
  const std::vector<float> b = RandomNormal(dims.k * dims.n, 2);
  std::vector<float> c = RandomNormal(dims.m * dims.n, 3);
  const std::vector<double> expected = NaiveGemm(dims, 0.75, a, b, -0.5, c);
  ASSERT_TRUE(Gemm(dims, 0.75f, a.data(), b.data(), -0.5f, c.data()).ok());
  EXPECT_LT(RelativeError(c, expected), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, GemmReferenceTest,
                         ::testing::Combine(::testing::Values(Case{1, 1, 1}, Case{3, 5, 7},
                                                              Case{64, 48, 80}, Case{129, 65, 257}),
                                            ::testing::Bool(), ::testing::Bool()));

TEST(GemmTest, BetaZeroIgnoresPriorContents) {
  const GemmDims dims{4, 4, 4};
  const std::vector<float> a = RandomNormal(16, 4), b = RandomNormal(16, 5);
  std::vector<float> c(16, 1e30f);
  ASSERT_TRUE(Gemm(dims, 1.0f, a.data(), b.data(), 0.0f, c.data()).ok());
  EXPECT_LT(RelativeError(c, NaiveGemm(dims, 1.0, a, b, 0.0, std::vector<float>(16, 0.0f))), 1e-6);
}

TEST(GemmTest, LeadingDimensionsSelectSlices) {
  // op(A) = the first 16 of 40 columns of a 24 x 40 matrix; C is the first
  // 8 columns of a 24 x 12 buffer whose other columns must stay untouched.
  GemmDims dims{24, 8, 16};
  dims.lda = 40;
  dims.ldb = 10;
  dims.ldc = 12;
  const std::vector<float> a = RandomNormal(24 * 40, 6), b = RandomNormal(16 * 10, 7);
  std::vector<float> c = RandomNormal(24 * 12, 8);
  const std::vector<float> before = c;
  const std::vector<double> expected = NaiveGemm(dims, 1.0, a, b, 0.5, c);
  ASSERT_TRUE(Gemm(dims, 1.0f, a.data(), b.data(), 0.5f, c.data()).ok());
  std::vector<float> written;
  for (int i = 0; i < 24; ++i) {
    for (int j = 0; j < 12; ++j) {
      if (j < 8) {
        written.push_back(c[i * 12 + j]);
      } else {
        EXPECT_EQ(c[i * 12 + j], before[i * 12 + j]) << i << "," << j;
      }
    }
  }
  EXPECT_LT(RelativeError(written, expected), 1e-5);
}

TEST(GemmTest, RejectsBadDimsNamingTheField) {
  std::vector<float> x(4, 1.0f);
  absl::Status status = Gemm(GemmDims{2, 0, 2}, 1.0f, x.data(), x.data(), 0.0f, x.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(status.message().find("GemmDims.n"), std::string::npos) << status;
  status = Gemm(GemmDims{int64_t{1} << 32, 1, 1}, 1.0f, x.data(), x.data(), 0.0f, x.data());
  EXPECT_NE(status.message().find("GemmDims.m"), std::string::npos) << status;
  GemmDims narrow{2, 2, 2};
  narrow.ldc = 1;
  status = Gemm(narrow, 1.0f, x.data(), x.data(), 0.0f, x.data());
  EXPECT_NE(status.message().find("GemmDims.ldc"), std::string::npos) << status;
  status = Gemm(GemmDims{2, 2, 2}, 1.0f, nullptr, x.data(), 0.0f, x.data());
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace maximus::kernels
