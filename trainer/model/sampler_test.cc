// The sampler: greedy and top-1 pick the argmax, the repetition penalty's
// arithmetic, sample frequencies against the softmax, seeds, bad settings.

#include "trainer/model/sampler.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace maximus::trainer {
namespace {

SamplingOptions Options(float temperature, int top_k, float penalty, uint64_t seed = 0) {
  SamplingOptions o;
  o.temperature = temperature;
  o.top_k = top_k;
  o.repetition_penalty = penalty;
  o.seed = seed;
  return o;
}

Sampler Make(const SamplingOptions& options) {
  absl::StatusOr<Sampler> sampler = Sampler::Create(options);
  EXPECT_TRUE(sampler.ok()) << sampler.status();
  return *std::move(sampler);
}

const std::vector<float> kLogits = {0.5f, -1.0f, 2.0f, 1.5f, -0.25f, 0.0f, 1.9f};

TEST(SamplerTest, GreedyPicksTheArgMax) {
  Sampler greedy = Make(Options(0, 0, 1.0f, 7));
  for (int i = 0; i < 5; ++i) {
    std::vector<float> z = kLogits;
    EXPECT_EQ(greedy.Sample(absl::MakeSpan(z), {}), 2);
  }
  // Ties go to the lowest index.
  std::vector<float> tie = {1.0f, 3.0f, 3.0f};
  EXPECT_EQ(greedy.Sample(absl::MakeSpan(tie), {}), 1);
  // The penalty applies before the argmax: 2.0 / 1.2 < 1.9.
  Sampler penalised = Make(Options(0, 0, 1.2f));
  std::vector<float> z = kLogits;
  EXPECT_EQ(penalised.Sample(absl::MakeSpan(z), std::vector<int32_t>{2}), 6);
}

TEST(SamplerTest, TopOneEqualsGreedy) {
  for (uint64_t seed = 0; seed < 4; ++seed) {
    Sampler top1 = Make(Options(1.5f, 1, 1.3f, seed));
    Sampler greedy = Make(Options(0, 0, 1.3f));
    for (int i = 0; i < 50; ++i) {
      const std::vector<int32_t> context = {static_cast<int32_t>(i % 7), 3};
      std::vector<float> a = kLogits, b = kLogits;
      EXPECT_EQ(top1.Sample(absl::MakeSpan(a), context), greedy.Sample(absl::MakeSpan(b), context));
    }
  }
}

TEST(SamplerTest, RepetitionPenaltyArithmetic) {
  std::vector<float> z = {2.0f, -2.0f, 0.0f, 3.0f, -0.5f};
  // Token 0 twice (penalised once), negative 1 and 4, zero 2 (0 * p = 0),
  // an id outside the vocabulary ignored; 3 untouched.
  ApplyRepetitionPenalty({0, 1, 0, 2, 4, 99, -1}, 2.0f, absl::MakeSpan(z));
  EXPECT_FLOAT_EQ(z[0], 1.0f);
  EXPECT_FLOAT_EQ(z[1], -4.0f);
  EXPECT_FLOAT_EQ(z[2], 0.0f);
  EXPECT_FLOAT_EQ(z[3], 3.0f);
  EXPECT_FLOAT_EQ(z[4], -1.0f);
  // A penalty below 1 rewards repetition the same way round.
  std::vector<float> w = {2.0f, -2.0f};
  ApplyRepetitionPenalty({0, 1}, 0.5f, absl::MakeSpan(w));
  EXPECT_FLOAT_EQ(w[0], 4.0f);
  EXPECT_FLOAT_EQ(w[1], -1.0f);
}

TEST(SamplerTest, DistributionIsPenaltyThenTemperatureThenTopK) {
  const float t = 0.7f, penalty = 1.3f;
  const std::vector<int32_t> context = {3, 1};
  Sampler sampler = Make(Options(t, 4, penalty));
  std::vector<float> z = kLogits;
  const std::vector<double> p = sampler.Distribution(absl::MakeSpan(z), context);
  // By hand: 1.5 -> 1.5/1.3, -1 -> -1.3; then the top 4 of
  // {0.5, -1.3, 2, 1.154, -0.25, 0, 1.9} are 2, 1.9, 1.154, 0.5.
  std::vector<double> e(7, 0.0);
  double total = 0;
  for (int i : {0, 2, 3, 6}) {
    const double zi = i == 3 ? 1.5 / penalty : kLogits[i];
    e[i] = std::exp(zi / t);
    total += e[i];
  }
  for (int i = 0; i < 7; ++i) EXPECT_NEAR(p[i], e[i] / total, 1e-6) << i;
}

TEST(SamplerTest, FrequenciesMatchTheSoftmax) {
  constexpr int kSamples = 20000;
  for (int top_k : {0, 3}) {
    Sampler sampler = Make(Options(0.9f, top_k, 1.0f, 12345));
    std::vector<float> z = kLogits;
    const std::vector<double> p = sampler.Distribution(absl::MakeSpan(z), {});
    std::vector<int> counts(kLogits.size(), 0);
    for (int i = 0; i < kSamples; ++i) {
      z = kLogits;
      const int32_t id = sampler.Sample(absl::MakeSpan(z), {});
      ASSERT_GE(id, 0);
      ASSERT_LT(id, static_cast<int32_t>(kLogits.size()));
      ++counts[id];
    }
    double chi2 = 0;
    int cells = 0;
    for (size_t i = 0; i < p.size(); ++i) {
      if (p[i] == 0) {
        EXPECT_EQ(counts[i], 0) << "token " << i << " is outside the top " << top_k;
        continue;
      }
      const double expected = p[i] * kSamples;
      // Five standard deviations of a binomial count.
      EXPECT_NEAR(counts[i], expected, 5 * std::sqrt(expected * (1 - p[i])))
          << "token " << i << " top_k " << top_k;
      chi2 += (counts[i] - expected) * (counts[i] - expected) / expected;
      ++cells;
    }
    // Far beyond the 99.99th percentile of chi-square with cells - 1 <= 6
    // degrees of freedom (27.9): only a broken sampler gets here.
    EXPECT_LT(chi2, 30.0) << "top_k " << top_k;
    EXPECT_EQ(cells, top_k == 0 ? 7 : 3);
  }
}

TEST(SamplerTest, SeedsReproduce) {
  auto draw = [](uint64_t seed) {
    Sampler sampler = Make(Options(1.0f, 0, 1.1f, seed));
    std::vector<int32_t> ids;
    for (int i = 0; i < 200; ++i) {
      std::vector<float> z = kLogits;
      ids.push_back(sampler.Sample(absl::MakeSpan(z), ids));
    }
    return ids;
  };
  EXPECT_EQ(draw(3), draw(3));
  EXPECT_NE(draw(3), draw(4));
}

TEST(SamplerTest, InvalidSettingsNameTheFlag) {
  struct Case {
    SamplingOptions options;
    const char* flag;
  };
  for (const Case& c :
       {Case{Options(-0.1f, 0, 1.0f), "--temperature"},
        Case{Options(NAN, 0, 1.0f), "--temperature"}, Case{Options(1.0f, -1, 1.0f), "--top_k"},
        Case{Options(1.0f, 0, 0.0f), "--repetition_penalty"},
        Case{Options(1.0f, 0, -1.0f), "--repetition_penalty"}}) {
    absl::StatusOr<Sampler> sampler = Sampler::Create(c.options);
    ASSERT_FALSE(sampler.ok()) << c.flag;
    EXPECT_EQ(sampler.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(sampler.status().message().find(c.flag), absl::string_view::npos) << sampler.status();
  }
  EXPECT_TRUE(ValidateSamplingOptions(Options(0, 0, 1.0f)).ok());
}

}  // namespace
}  // namespace maximus::trainer
