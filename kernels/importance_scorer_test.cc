// The importance scorer: its definition, and its backward against central
// differences in float64.

#include "kernels/importance_scorer.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

constexpr int64_t kWidth = kImportanceScorerWidth;

TEST(ImportanceScorerTest, ForwardIsTheDefinition) {
  const int64_t rows = 13, d = 9;
  const std::vector<float> x = RandomNormal(rows * d, 1), w1 = RandomNormal(kWidth * d, 2, 0.3f),
                           b1 = RandomNormal(kWidth, 3), w2 = RandomNormal(kWidth, 4),
                           b2 = RandomNormal(1, 5);
  std::vector<float> scores(rows, NAN);
  ASSERT_TRUE(ImportanceScores<float>({d, w1.data(), b1.data(), w2.data(), b2.data()}, rows,
                                      x.data(), scores.data())
                  .ok());
  std::vector<double> want(rows);
  for (int64_t r = 0; r < rows; ++r) {
    double s = b2[0];
    for (int64_t j = 0; j < kWidth; ++j) {
      double pre = b1[j];
      for (int64_t c = 0; c < d; ++c) pre += double{w1[j * d + c]} * x[r * d + c];
      s += w2[j] * std::tanh(pre);
    }
    want[r] = s;
  }
  EXPECT_LE(RelativeError(scores, want), 1e-6);
}

TEST(ImportanceScorerTest, BackwardMatchesFiniteDifferences) {
  const int64_t rows = 7, d = 5;
  std::vector<std::vector<double>> p;
  for (const std::vector<float>& f :
       {RandomNormal(rows * d, 11), RandomNormal(kWidth * d, 12, 0.4f), RandomNormal(kWidth, 13),
        RandomNormal(kWidth, 14), RandomNormal(1, 15)}) {
    p.emplace_back(f.begin(), f.end());
  }
  const std::vector<float> ds_f = RandomNormal(rows, 16);
  const std::vector<double> dscores(ds_f.begin(), ds_f.end());
  auto weights = [&]() {
    return ImportanceScorerWeights<double>{d, p[1].data(), p[2].data(), p[3].data(), p[4].data()};
  };
  auto loss = [&]() {
    std::vector<double> s(rows);
    EXPECT_TRUE(ImportanceScores<double>(weights(), rows, p[0].data(), s.data()).ok());
    double sum = 0;
    for (int64_t r = 0; r < rows; ++r) sum += dscores[r] * s[r];
    return sum;
  };
  std::vector<std::vector<double>> got;
  for (const auto& x : p) got.emplace_back(x.size(), 0.5);  // accumulated onto 0.5
  ASSERT_TRUE(
      ImportanceScoresBackward<double>(weights(), rows, p[0].data(), dscores.data(), got[0].data(),
                                       {got[1].data(), got[2].data(), got[3].data(), got[4].data()})
          .ok());
  const char* names[] = {"dx", "dW1", "db1", "dw2", "db2"};
  for (size_t t = 0; t < p.size(); ++t) {
    std::vector<double> want(p[t].size());
    for (size_t i = 0; i < p[t].size(); ++i) {
      const double kept = p[t][i], eps = 1e-6;
      p[t][i] = kept + eps;
      const double up = loss();
      p[t][i] = kept - eps;
      const double down = loss();
      p[t][i] = kept;
      want[i] = 0.5 + (up - down) / (2 * eps);
    }
    EXPECT_LE(RelativeError(got[t], want), 1e-7) << names[t];
  }
}

TEST(ImportanceScorerTest, RejectsBadSizes) {
  std::vector<float> w(kWidth), s(1);
  EXPECT_FALSE(
      ImportanceScores<float>({0, w.data(), w.data(), w.data(), w.data()}, 1, w.data(), s.data())
          .ok());
}

}  // namespace
}  // namespace maximus::kernels
