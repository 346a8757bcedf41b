// The CPU reference of the exact linear-head cross-entropy against a float64
// full-logits computation, finite differences, and its mask and validation rules.

#include "kernels/cross_entropy.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/loss_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

using Problem = testing::LinearHeadProblem;

// Random problem; with `masked`, every third row (starting at 1) is masked and
// gets an out-of-range target, which must be ignored.
Problem MakeProblem(int64_t n, int64_t d, int64_t v, bool masked, uint64_t seed,
                    float hidden_scale = 1.0f) {
  Problem p = testing::RandomLinearHeadProblem({n, d, v}, seed, masked, hidden_scale);
  for (int64_t i = 1; masked && i < n; i += 3) p.targets[i] = static_cast<int32_t>(v + i);
  return p;
}

struct Naive {
  double loss = 0.0;
  std::vector<double> token_loss, grad_hidden, grad_weight;
};

// Straight from the definitions in cross_entropy.h, in float64 with all N x V logits.
Naive NaiveCrossEntropy(const Problem& p) {
  const int64_t n = p.shape.tokens, d = p.shape.hidden, v = p.shape.vocab;
  Naive out;
  out.token_loss.assign(n, 0.0);
  out.grad_hidden.assign(n * d, 0.0);
  out.grad_weight.assign(v * d, 0.0);
  double count = 0.0;
  for (int64_t i = 0; i < n; ++i) count += p.mask.empty() || p.mask[i] ? 1.0 : 0.0;
  const double m_total = std::max(1.0, count);
  for (int64_t i = 0; i < n; ++i) {
    if (!p.mask.empty() && !p.mask[i]) continue;
    std::vector<double> z(v);
    for (int64_t c = 0; c < v; ++c) {
      for (int64_t j = 0; j < d; ++j) z[c] += double{p.hidden[i * d + j]} * p.weight[c * d + j];
    }
    const double max = *std::max_element(z.begin(), z.end());
    double sum = 0.0;
    for (double zc : z) sum += std::exp(zc - max);
    const double lse = max + std::log(sum);
    out.token_loss[i] = lse - z[p.targets[i]];
    out.loss += out.token_loss[i] / m_total;
    for (int64_t c = 0; c < v; ++c) {
      const double g = (std::exp(z[c] - lse) - (c == p.targets[i] ? 1.0 : 0.0)) / m_total;
      for (int64_t j = 0; j < d; ++j) {
        out.grad_hidden[i * d + j] += g * p.weight[c * d + j];
        out.grad_weight[c * d + j] += g * p.hidden[i * d + j];
      }
    }
  }
  return out;
}

struct Case {
  int64_t n, d, v, tile;
  bool masked;
};

class CrossEntropyReferenceTest : public ::testing::TestWithParam<Case> {};

TEST_P(CrossEntropyReferenceTest, MatchesFloat64FullLogits) {
  const Case c = GetParam();
  const Problem p = MakeProblem(c.n, c.d, c.v, c.masked, 10 + c.v);
  const absl::StatusOr<CrossEntropyResult> result =
      LinearCrossEntropy(p.shape, p.Inputs(), /*compute_gradients=*/true, c.tile);
  ASSERT_TRUE(result.ok()) << result.status();
  const Naive expected = NaiveCrossEntropy(p);
  // fp32 logits from an fp32 GEMM: ~1e-7 relative per value, far below 1e-5.
  EXPECT_NEAR(result->loss, expected.loss, 1e-5 * std::abs(expected.loss) + 1e-9);
  EXPECT_LT(RelativeError(result->token_loss, expected.token_loss), 1e-5);
  EXPECT_LT(RelativeError(result->grad_hidden, expected.grad_hidden), 1e-5);
  EXPECT_LT(RelativeError(result->grad_weight, expected.grad_weight), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(Shapes, CrossEntropyReferenceTest,
                         ::testing::Values(Case{1, 1, 1, 4096, false},  // Single class: loss 0.
                                           Case{5, 8, 37, 8,
                                                false},  // V not a multiple of the tile.
                                           Case{16, 32, 100, 33, true},  // Partial mask.
                                           Case{7, 16, 257, 64, true},   // Last tile of one column.
                                           Case{9, 12, 50, 1, true},     // One column per tile.
                                           Case{4, 24, 60, 1000, false})  // Tile larger than V.
);

TEST(CrossEntropyTest, WithoutGradientsSameLossNoGradients) {
  const Problem p = MakeProblem(6, 16, 40, true, 1);
  const auto with = LinearCrossEntropy(p.shape, p.Inputs(), true, 16);
  const auto without = LinearCrossEntropy(p.shape, p.Inputs(), false, 16);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_EQ(without->loss, with->loss);
  EXPECT_EQ(without->token_loss, with->token_loss);
  EXPECT_TRUE(without->grad_hidden.empty());
  EXPECT_TRUE(without->grad_weight.empty());
}

TEST(CrossEntropyTest, TileSizeOnlyChangesRounding) {
  const Problem p = MakeProblem(8, 16, 97, true, 2);
  const auto whole = LinearCrossEntropy(p.shape, p.Inputs(), true, 97);
  ASSERT_TRUE(whole.ok());
  for (int64_t tile : {1, 7, 32, 96}) {
    const auto tiled = LinearCrossEntropy(p.shape, p.Inputs(), true, tile);
    ASSERT_TRUE(tiled.ok());
    EXPECT_NEAR(tiled->loss, whole->loss, 1e-6 * whole->loss) << "tile " << tile;
    EXPECT_LT(RelativeError(tiled->grad_hidden, whole->grad_hidden), 1e-6) << "tile " << tile;
    EXPECT_LT(RelativeError(tiled->grad_weight, whole->grad_weight), 1e-6) << "tile " << tile;
  }
}

// Logits in the hundreds overflow a naive exp in fp32 and double alike; the
// online log-sum-exp must not, and the softmax must stay exact.
TEST(CrossEntropyTest, StableForLargeLogits) {
  const Problem p = MakeProblem(5, 32, 70, false, 3, /*hidden_scale=*/100.0f);
  const auto result = LinearCrossEntropy(p.shape, p.Inputs(), true, 16);
  ASSERT_TRUE(result.ok());
  const Naive expected = NaiveCrossEntropy(p);
  ASSERT_TRUE(std::isfinite(result->loss));
  EXPECT_GT(expected.loss, 10.0);  // The inputs really are extreme.
  EXPECT_NEAR(result->loss, expected.loss, 1e-5 * expected.loss);
  EXPECT_LT(RelativeError(result->grad_hidden, expected.grad_hidden), 1e-5);
  EXPECT_LT(RelativeError(result->grad_weight, expected.grad_weight), 1e-5);
}

// Central differences of the fp32 function itself. The loss is returned in
// double but built from fp32 logits (absolute error ~1e-7 at |z| ~ 3, and
// mostly common to both evaluations), so a step of 1e-2 gives a rounding error
// of ~1e-7 / 1e-2 = 1e-5 and a truncation error of ~h² |f'''| / 6 ~ 1e-5;
// gradient entries are ~1e-2 to 0.5 (observed differences: <= 3e-6).
TEST(CrossEntropyTest, GradientsMatchFiniteDifferences) {
  Problem p = MakeProblem(6, 10, 23, true, 4);
  const auto result = LinearCrossEntropy(p.shape, p.Inputs(), true, 5);
  ASSERT_TRUE(result.ok());
  const float step = 1e-2f;
  auto loss_at = [&](std::vector<float>& values, size_t index, float delta) {
    const float saved = values[index];
    values[index] = saved + delta;
    const double loss = LinearCrossEntropy(p.shape, p.Inputs(), false, 5)->loss;
    values[index] = saved;
    return loss;
  };
  auto check = [&](std::vector<float>& values, const std::vector<float>& grad, const char* name) {
    std::mt19937_64 rng(5);
    std::uniform_int_distribution<size_t> pick(0, values.size() - 1);
    double largest = 0.0;
    for (int trial = 0; trial < 25; ++trial) {
      const size_t index = pick(rng);
      // The step actually taken in fp32.
      const double up = double{values[index] + step} - values[index];
      const double down = double{values[index]} - (values[index] - step);
      const double fd =
          (loss_at(values, index, step) - loss_at(values, index, -step)) / (up + down);
      EXPECT_NEAR(grad[index], fd, 5e-5 + 1e-3 * std::abs(fd)) << name << "[" << index << "]";
      largest = std::max(largest, std::abs(fd));
    }
    EXPECT_GT(largest, 1e-2) << name << ": the check saw only tiny gradients";
  };
  check(p.hidden, result->grad_hidden, "grad_hidden");
  check(p.weight, result->grad_weight, "grad_weight");
}

// Masked rows are as if absent: same loss and gradients as the problem without them.
TEST(CrossEntropyTest, MaskedRowsContributeNothing) {
  const Problem p = MakeProblem(10, 12, 31, true, 6);
  Problem kept;
  kept.shape = p.shape;
  kept.weight = p.weight;
  std::vector<int64_t> rows;
  for (int64_t i = 0; i < p.shape.tokens; ++i) {
    if (!p.mask[i]) continue;
    rows.push_back(i);
    kept.hidden.insert(kept.hidden.end(), p.hidden.begin() + i * 12,
                       p.hidden.begin() + i * 12 + 12);
    kept.targets.push_back(p.targets[i]);
  }
  kept.shape.tokens = static_cast<int64_t>(rows.size());
  ASSERT_LT(kept.shape.tokens, p.shape.tokens);
  const auto masked = LinearCrossEntropy(p.shape, p.Inputs(), true, 8);
  const auto compact = LinearCrossEntropy(kept.shape, kept.Inputs(), true, 8);
  ASSERT_TRUE(masked.ok()) << masked.status();
  ASSERT_TRUE(compact.ok()) << compact.status();
  EXPECT_NEAR(masked->loss, compact->loss, 1e-6 * compact->loss);
  EXPECT_LT(RelativeError(masked->grad_weight, compact->grad_weight), 1e-6);
  std::vector<float> kept_grad_hidden;
  for (int64_t i = 0; i < p.shape.tokens; ++i) {
    const float* row = &masked->grad_hidden[i * 12];
    if (p.mask[i]) {
      kept_grad_hidden.insert(kept_grad_hidden.end(), row, row + 12);
    } else {
      EXPECT_EQ(masked->token_loss[i], 0.0f) << i;
      for (int j = 0; j < 12; ++j) EXPECT_EQ(row[j], 0.0f) << i;
    }
  }
  EXPECT_LT(RelativeError(kept_grad_hidden, compact->grad_hidden), 1e-6);
}

TEST(CrossEntropyTest, AllMaskedGivesZeroLossAndGradients) {
  Problem p = MakeProblem(4, 8, 20, false, 7);
  p.mask.assign(4, 0);
  const auto result = LinearCrossEntropy(p.shape, p.Inputs(), true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->loss, 0.0);
  EXPECT_EQ(result->token_loss, std::vector<float>(4, 0.0f));
  EXPECT_EQ(result->grad_hidden, std::vector<float>(4 * 8, 0.0f));
  EXPECT_EQ(result->grad_weight, std::vector<float>(20 * 8, 0.0f));
}

void ExpectInvalid(const absl::Status& status, const std::string& text) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(text), std::string::npos)
      << "\"" << status.message() << "\" does not name " << text;
}

TEST(CrossEntropyTest, ValidationNamesTheFieldOrPosition) {
  ExpectInvalid(ValidateLinearHeadShape({0, 4, 4}), "LinearHeadShape.tokens");
  ExpectInvalid(ValidateLinearHeadShape({4, -1, 4}), "LinearHeadShape.hidden");
  ExpectInvalid(ValidateLinearHeadShape({4, 4, int64_t{1} << 31}), "LinearHeadShape.vocab");
  EXPECT_TRUE(ValidateLinearHeadShape({1, 1, 1}).ok());

  Problem p = MakeProblem(6, 4, 10, true, 8);
  EXPECT_TRUE(ValidateLinearHeadInputs(p.shape, p.Inputs()).ok());
  LinearHeadInputs inputs = p.Inputs();
  inputs.weight = nullptr;
  ExpectInvalid(ValidateLinearHeadInputs(p.shape, inputs), "LinearHeadInputs.weight");
  inputs = p.Inputs();
  inputs.targets = nullptr;
  ExpectInvalid(ValidateLinearHeadInputs(p.shape, inputs), "LinearHeadInputs.targets");
  inputs.loss_mask = nullptr;  // A null mask is all ones, so no error from it.
  inputs.targets = p.targets.data();
  ExpectInvalid(ValidateLinearHeadInputs(p.shape, inputs), "LinearHeadInputs.targets[1]");

  p.targets[3] = -1;  // Unmasked; row 1 (masked, out of range) comes first but is fine.
  p.targets[5] = 10;
  ExpectInvalid(ValidateLinearHeadInputs(p.shape, p.Inputs()), "LinearHeadInputs.targets[3]");
  ExpectInvalid(LinearCrossEntropy(p.shape, p.Inputs(), true).status(), "targets[3]");
  p.targets[3] = 0;
  ExpectInvalid(ValidateLinearHeadInputs(p.shape, p.Inputs()), "LinearHeadInputs.targets[5]");
  p.targets[5] = 9;
  p.mask[2] = 2;
  ExpectInvalid(ValidateLinearHeadInputs(p.shape, p.Inputs()), "LinearHeadInputs.loss_mask[2]");
  p.mask[2] = 1;
  EXPECT_TRUE(LinearCrossEntropy(p.shape, p.Inputs(), true).ok());
  ExpectInvalid(LinearCrossEntropy(p.shape, p.Inputs(), true, 0).status(), "vocab_tile");
  ExpectInvalid(LinearCrossEntropy({6, 0, 10}, p.Inputs(), true).status(), "hidden");
}

}  // namespace
}  // namespace maximus::kernels
