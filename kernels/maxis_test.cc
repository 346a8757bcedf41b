// The CPU reference of the MAXIS loss: candidates against a brute-force top-k,
// the loss against a float64 copy of maxis.h's definition and finite
// differences, against exact cross-entropy when C is the whole vocabulary, and
// the ghost logit against the exact tail it stands in for.

#include "kernels/maxis.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/cross_entropy.h"
#include "kernels/loss_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

using Problem = testing::LinearHeadProblem;

// Random problem; with `masked`, every third row (starting at 1) is masked.
Problem MakeProblem(int64_t n, int64_t d, int64_t v, bool masked, uint64_t seed,
                    float weight_scale = 0.5f) {
  return testing::RandomLinearHeadProblem({n, d, v}, seed, masked, 1.0f, weight_scale);
}

MaxisConfig Config(int64_t low_dim, float aux_weight, bool use_ghost = true,
                   int64_t candidate_budget = 8) {
  MaxisConfig config;
  config.low_dim = low_dim;
  config.scout_stride = 2;
  config.candidate_budget = candidate_budget;
  config.aux_weight = aux_weight;
  config.use_ghost = use_ghost;
  return config;
}

// Every third id from `first`, plus the first two targets so that the
// "c = y_i" slot is exercised.
std::vector<int32_t> SomeCandidates(const Problem& p, int32_t first = 0) {
  std::set<int32_t> ids(p.targets.begin(), p.targets.begin() + 2);
  for (int32_t v = first; v < p.shape.vocab; v += 3) ids.insert(v);
  return {ids.begin(), ids.end()};
}

double MeanSquaredRowNorm(const std::vector<double>& w, int64_t d, int64_t dims) {
  const int64_t v = static_cast<int64_t>(w.size()) / d;
  double total = 0.0;
  for (int64_t r = 0; r < v; ++r) {
    for (int64_t j = 0; j < dims; ++j) total += w[r * d + j] * w[r * d + j];
  }
  return total / v;
}

std::vector<double> ToDouble(const std::vector<float>& x) { return {x.begin(), x.end()}; }

// -log softmax([t, z_c (c != y), ghost])[0] for one row on the first `dims`
// dimensions, straight from maxis.h step 3-4, in float64.
double NaiveRowLoss(const double* h, const std::vector<double>& w, int64_t d, int64_t dims,
                    int32_t y, const std::vector<int32_t>& candidates, double mean_norm,
                    int64_t vocab, bool use_ghost) {
  auto dot = [&](int32_t v) {
    double sum = 0.0;
    for (int64_t j = 0; j < dims; ++j) sum += h[j] * w[v * d + j];
    return sum;
  };
  std::vector<double> z = {dot(y)};
  for (int32_t c : candidates) {
    if (c != y) z.push_back(dot(c));
  }
  if (use_ghost) {
    double norm = 0.0;
    for (int64_t j = 0; j < dims; ++j) norm += h[j] * h[j];
    z.push_back(std::log(static_cast<double>(vocab - candidates.size() - 1)) +
                norm * mean_norm / (2.0 * dims));
  }
  const double max = *std::max_element(z.begin(), z.end());
  double sum = 0.0;
  for (double x : z) sum += std::exp(x - max);
  return max + std::log(sum) - z[0];
}

struct NaiveLoss {
  double main = 0.0, aux = 0.0;
};

// The whole loss in float64 with E[||w||²] and E[||w[:d_low]||²] given, so
// that finite differences in W hold them fixed as maxis.h asks (no gradient).
NaiveLoss NaiveMaxis(const Problem& p, const std::vector<double>& h, const std::vector<double>& w,
                     const std::vector<int32_t>& candidates, const MaxisConfig& config,
                     double mean_norm, double mean_norm_low) {
  const int64_t d = p.shape.hidden;
  NaiveLoss out;
  double count = 0.0;
  for (int64_t i = 0; i < p.shape.tokens; ++i) {
    if (!p.Unmasked(i)) continue;
    count += 1.0;
    out.main += NaiveRowLoss(&h[i * d], w, d, d, p.targets[i], candidates, mean_norm, p.shape.vocab,
                             config.use_ghost);
    out.aux += NaiveRowLoss(&h[i * d], w, d, config.low_dim, p.targets[i], candidates,
                            mean_norm_low, p.shape.vocab, config.use_ghost);
  }
  out.main /= std::max(1.0, count);
  out.aux /= std::max(1.0, count);
  return out;
}

TEST(MaxisLossTest, MatchesFloat64Definition) {
  for (bool use_ghost : {true, false}) {
    const Problem p = MakeProblem(9, 12, 60, true, 1);
    const std::vector<int32_t> candidates = SomeCandidates(p);
    const MaxisConfig config = Config(4, 0.3f, use_ghost);
    const auto result = MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, config, false);
    ASSERT_TRUE(result.ok()) << result.status();
    const std::vector<double> w = ToDouble(p.weight);
    const NaiveLoss expected =
        NaiveMaxis(p, ToDouble(p.hidden), w, candidates, config, MeanSquaredRowNorm(w, 12, 12),
                   MeanSquaredRowNorm(w, 12, 4));
    // fp32 logits from an fp32 GEMM: ~1e-7 relative.
    EXPECT_NEAR(result->main_loss, expected.main, 1e-6 * expected.main) << use_ghost;
    EXPECT_NEAR(result->aux_loss, expected.aux, 1e-6 * expected.aux) << use_ghost;
    EXPECT_NEAR(result->loss, expected.main + 0.3 * expected.aux, 1e-6 * result->loss);
    EXPECT_EQ(result->candidates, candidates);
    EXPECT_TRUE(result->grad_hidden.empty());
    EXPECT_TRUE(result->grad_weight.ids.empty());
  }
}

// Sorted unique {y_i : m_i = 1} ∪ C.
std::vector<int32_t> GradientIds(const Problem& p, const std::vector<int32_t>& candidates) {
  std::set<int32_t> ids(candidates.begin(), candidates.end());
  for (int64_t i = 0; i < p.shape.tokens; ++i) {
    if (p.Unmasked(i)) ids.insert(p.targets[i]);
  }
  return {ids.begin(), ids.end()};
}

// Gradients against central differences of the float64 copy (step 1e-5:
// truncation ~1e-10, rounding ~1e-16 / 1e-5 = 1e-11), so the only error left is
// the reference's fp32 logits and GEMMs, ~1e-6 relative. W's differences hold
// E[||w||²] fixed; H's do not need to. The ghost dominates the softmax here
// (ln(V - |C| - 1) ~ 5 against logits of ~1.5), so its term through ||h||²
// is a large part of dH and a missing or wrong one fails.
TEST(MaxisLossTest, GradientsMatchFiniteDifferences) {
  for (bool use_ghost : {true, false}) {
    Problem p = MakeProblem(7, 12, 150, true, 2);
    const std::vector<int32_t> candidates = SomeCandidates(p, 1);
    p.targets[1] = 149;  // Masked, not in C and no unmasked target: no gradient row.
    ASSERT_EQ(p.mask[1], 0);
    ASSERT_FALSE(std::binary_search(candidates.begin(), candidates.end(), 149));
    ASSERT_EQ(std::count(p.targets.begin(), p.targets.end(), 149), 1);
    const MaxisConfig config = Config(5, 0.7f, use_ghost);
    const auto result = MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, config, true);
    ASSERT_TRUE(result.ok()) << result.status();
    const std::vector<int32_t> ids = GradientIds(p, candidates);
    ASSERT_EQ(result->grad_weight.ids, ids);
    EXPECT_FALSE(std::binary_search(ids.begin(), ids.end(), 149));
    ASSERT_EQ(result->grad_weight.rows.size(), ids.size() * 12);

    std::vector<double> h = ToDouble(p.hidden), w = ToDouble(p.weight);
    const double e = MeanSquaredRowNorm(w, 12, 12), e_low = MeanSquaredRowNorm(w, 12, 5);
    auto loss = [&] {
      const NaiveLoss l = NaiveMaxis(p, h, w, candidates, config, e, e_low);
      return l.main + config.aux_weight * l.aux;
    };
    auto derivative = [&](double& x) {
      const double step = 1e-5, saved = x;
      x = saved + step;
      const double up = loss();
      x = saved - step;
      const double down = loss();
      x = saved;
      return (up - down) / (2 * step);
    };
    std::vector<double> fd_hidden(h.size());
    for (size_t j = 0; j < h.size(); ++j) fd_hidden[j] = derivative(h[j]);
    EXPECT_LT(RelativeError(result->grad_hidden, fd_hidden), 1e-6) << use_ghost;
    std::vector<double> fd_weight;
    for (int32_t id : ids) {
      for (int64_t j = 0; j < 12; ++j) fd_weight.push_back(derivative(w[id * 12 + j]));
    }
    EXPECT_LT(RelativeError(result->grad_weight.rows, fd_weight), 1e-6) << use_ghost;
    for (size_t j = 0; j < fd_weight.size(); ++j) {
      EXPECT_NEAR(result->grad_weight.rows[j], fd_weight[j], 1e-6 + 1e-4 * std::abs(fd_weight[j]))
          << "row " << ids[j / 12] << " dim " << j % 12;
    }
    // A row outside the sparse set has no gradient at all.
    EXPECT_EQ(derivative(w[149 * 12 + 3]), 0.0);
  }
}

// dH also against central differences of the fp32 function itself, ghost and
// aux included (E does not depend on H). Step 1e-2: rounding of the fp32
// logits ~1e-7 / 1e-2 = 1e-5, truncation ~h² |f'''| / 6 ~ 1e-5.
TEST(MaxisLossTest, HiddenGradientMatchesFiniteDifferencesOfTheFp32Function) {
  Problem p = MakeProblem(6, 16, 120, true, 3);
  const std::vector<int32_t> candidates = SomeCandidates(p);
  const MaxisConfig config = Config(6, 0.5f);
  const auto result = MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, config, true);
  ASSERT_TRUE(result.ok()) << result.status();
  const float step = 1e-2f;
  std::mt19937_64 rng(4);
  std::uniform_int_distribution<size_t> pick(0, p.hidden.size() - 1);
  double largest = 0.0;
  for (int trial = 0; trial < 30; ++trial) {
    const size_t j = pick(rng);
    const float saved = p.hidden[j];
    p.hidden[j] = saved + step;
    const double up = MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, config, false)->loss;
    const double taken_up = double{p.hidden[j]} - saved;
    p.hidden[j] = saved - step;
    const double down =
        MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, config, false)->loss;
    const double taken_down = saved - double{p.hidden[j]};
    p.hidden[j] = saved;
    const double fd = (up - down) / (taken_up + taken_down);
    EXPECT_NEAR(result->grad_hidden[j], fd, 5e-5 + 1e-3 * std::abs(fd))
        << "grad_hidden[" << j << "]";
    largest = std::max(largest, std::abs(fd));
  }
  EXPECT_GT(largest, 1e-2);
}

// With C = the whole vocabulary and no ghost, the main term is exact CE and
// the aux term exact CE on the first d_low dimensions.
TEST(MaxisLossTest, WholeVocabularyWithoutGhostIsExactCrossEntropy) {
  const Problem p = MakeProblem(10, 16, 45, true, 5);
  std::vector<int32_t> all(45);
  std::iota(all.begin(), all.end(), 0);
  const auto ce = LinearCrossEntropy(p.shape, p.Inputs(), true, 16);
  ASSERT_TRUE(ce.ok()) << ce.status();

  MaxisConfig config = Config(6, 0.0f, /*use_ghost=*/false, /*candidate_budget=*/1000);
  const auto main = MaxisLossWithCandidates(p.shape, p.Inputs(), all, config, true);
  ASSERT_TRUE(main.ok()) << main.status();
  EXPECT_NEAR(main->main_loss, ce->loss, 1e-6 * ce->loss);
  EXPECT_EQ(main->loss, main->main_loss);
  EXPECT_LT(RelativeError(main->grad_hidden, ce->grad_hidden), 1e-5);
  EXPECT_EQ(main->grad_weight.ids, all);
  EXPECT_LT(RelativeError(main->grad_weight.rows, ce->grad_weight), 1e-5);

  // The aux term: CE of H[:, :6] · W[:, :6]ᵀ, weighted by alpha.
  Problem low = p;
  low.shape.hidden = 6;
  low.hidden.clear();
  low.weight.clear();
  for (int64_t i = 0; i < 10; ++i) {
    low.hidden.insert(low.hidden.end(), &p.hidden[i * 16], &p.hidden[i * 16 + 6]);
  }
  for (int64_t v = 0; v < 45; ++v) {
    low.weight.insert(low.weight.end(), &p.weight[v * 16], &p.weight[v * 16 + 6]);
  }
  const auto ce_low = LinearCrossEntropy(low.shape, low.Inputs(), true, 16);
  ASSERT_TRUE(ce_low.ok());
  config.aux_weight = 0.4f;
  const auto both = MaxisLossWithCandidates(p.shape, p.Inputs(), all, config, true);
  ASSERT_TRUE(both.ok());
  EXPECT_NEAR(both->aux_loss, ce_low->loss, 1e-6 * ce_low->loss);
  EXPECT_NEAR(both->loss, ce->loss + 0.4 * ce_low->loss, 1e-6 * both->loss);
  std::vector<float> grad_hidden = ce->grad_hidden, grad_weight = ce->grad_weight;
  for (int64_t i = 0; i < 10; ++i) {
    for (int64_t j = 0; j < 6; ++j)
      grad_hidden[i * 16 + j] += 0.4f * ce_low->grad_hidden[i * 6 + j];
  }
  for (int64_t v = 0; v < 45; ++v) {
    for (int64_t j = 0; j < 6; ++j)
      grad_weight[v * 16 + j] += 0.4f * ce_low->grad_weight[v * 6 + j];
  }
  EXPECT_LT(RelativeError(both->grad_hidden, grad_hidden), 1e-5);
  EXPECT_LT(RelativeError(both->grad_weight.rows, grad_weight), 1e-5);
}

// alpha scales the aux term alone: the loss moves by delta_alpha * aux, and
// the gradients move linearly in alpha and only in the first d_low dimensions.
TEST(MaxisLossTest, AuxWeightScalesOnlyTheAuxTerm) {
  const Problem p = MakeProblem(8, 12, 70, true, 6);
  const std::vector<int32_t> candidates = SomeCandidates(p);
  std::vector<absl::StatusOr<MaxisResult>> results;
  for (float alpha : {0.0f, 0.25f, 0.5f}) {
    results.push_back(
        MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, Config(5, alpha), true));
    ASSERT_TRUE(results.back().ok()) << results.back().status();
  }
  const MaxisResult &r0 = *results[0], &r1 = *results[1], &r2 = *results[2];
  EXPECT_GT(r0.aux_loss, 0.1);
  EXPECT_EQ(r0.loss, r0.main_loss);
  for (const MaxisResult* r : {&r1, &r2}) {
    EXPECT_EQ(r->main_loss, r0.main_loss);
    EXPECT_EQ(r->aux_loss, r0.aux_loss);
  }
  EXPECT_NEAR(r1.loss - r0.loss, 0.25 * r0.aux_loss, 1e-12);
  EXPECT_NEAR(r2.loss - r0.loss, 0.5 * r0.aux_loss, 1e-12);
  auto check = [&](const std::vector<float>& g0, const std::vector<float>& g1,
                   const std::vector<float>& g2, int64_t d, const char* name) {
    std::vector<double> step1, step2;
    for (size_t j = 0; j < g0.size(); ++j) {
      if (static_cast<int64_t>(j) % d >= 5) {
        EXPECT_EQ(g1[j], g0[j]) << name << "[" << j << "] is beyond d_low";
        EXPECT_EQ(g2[j], g0[j]) << name << "[" << j << "] is beyond d_low";
      } else {
        step1.push_back(2.0 * (double{g1[j]} - g0[j]));
        step2.push_back(double{g2[j]} - g0[j]);
      }
    }
    double norm = 0.0;
    for (double x : step2) norm += x * x;
    EXPECT_GT(std::sqrt(norm), 1e-3) << name << ": aux gradient missing";
    EXPECT_LT(RelativeError(step1, step2), 1e-4) << name << ": not linear in alpha";
  };
  check(r0.grad_hidden, r1.grad_hidden, r2.grad_hidden, 12, "grad_hidden");
  ASSERT_EQ(r0.grad_weight.ids, r1.grad_weight.ids);
  ASSERT_EQ(r0.grad_weight.ids, r2.grad_weight.ids);
  check(r0.grad_weight.rows, r1.grad_weight.rows, r2.grad_weight.rows, 12, "grad_weight");
}

// Changing a masked row's hidden vector and target changes nothing else, and
// its target gets no gradient row.
TEST(MaxisLossTest, MaskedPositionsContributeNothing) {
  Problem p = MakeProblem(9, 8, 80, true, 7);
  const MaxisConfig config = Config(4, 0.3f);
  // Row 1 is masked; MaxisLoss's scouts are rows 0, 2, 4, ... so it is no scout.
  ASSERT_EQ(p.mask[1], 0);
  ASSERT_EQ(config.scout_stride, 2);
  const auto before = MaxisLoss(p.shape, p.Inputs(), config, true);
  ASSERT_TRUE(before.ok()) << before.status();
  for (int j = 0; j < 8; ++j) p.hidden[8 + j] *= -3.0f;
  p.targets[1] = -5;  // Out of range is fine where masked.
  const auto after = MaxisLoss(p.shape, p.Inputs(), config, true);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->candidates, before->candidates);
  EXPECT_EQ(after->loss, before->loss);
  EXPECT_EQ(after->main_loss, before->main_loss);
  EXPECT_EQ(after->aux_loss, before->aux_loss);
  EXPECT_EQ(after->grad_hidden, before->grad_hidden);
  EXPECT_EQ(after->grad_weight.ids, before->grad_weight.ids);
  EXPECT_EQ(after->grad_weight.rows, before->grad_weight.rows);
  for (int j = 0; j < 8; ++j) EXPECT_EQ(after->grad_hidden[8 + j], 0.0f);

  // A masked row's target outside C and the unmasked targets: no row for it.
  std::set<int32_t> taken(before->candidates.begin(), before->candidates.end());
  for (int64_t i = 0; i < 9; ++i) {
    if (p.mask[i]) taken.insert(p.targets[i]);
  }
  int32_t unused = 0;
  while (taken.count(unused)) ++unused;
  p.targets[1] = unused;
  const auto third = MaxisLoss(p.shape, p.Inputs(), config, true);
  ASSERT_TRUE(third.ok());
  EXPECT_EQ(third->grad_weight.ids, before->grad_weight.ids);
  EXPECT_EQ(third->grad_weight.ids, std::vector<int32_t>(taken.begin(), taken.end()));
  EXPECT_EQ(third->loss, before->loss);
}

TEST(MaxisLossTest, AllMaskedGivesZeroLossAndGradients) {
  Problem p = MakeProblem(4, 8, 30, false, 8);
  p.mask.assign(4, 0);
  const std::vector<int32_t> candidates = {2, 5, 7};
  const auto result =
      MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, Config(4, 0.2f), true);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->loss, 0.0);
  EXPECT_EQ(result->grad_hidden, std::vector<float>(4 * 8, 0.0f));
  EXPECT_EQ(result->grad_weight.ids, candidates);
  EXPECT_EQ(result->grad_weight.rows, std::vector<float>(3 * 8, 0.0f));
}

// The ghost stands in for the unsampled tail T = {v ∉ C, v != y}. For W with
// i.i.d. N(0, sigma²) entries, h·w_v ~ N(0, s²) given h with s² = sigma² ||h||²,
// so E exp(h·w_v) = exp(s² / 2) and, with E[||w||²] = d sigma², the ghost
// ln |T| + ||h||² E[||w||²] / (2d) is ln E sum_T exp(h·w_v). The sum of |T|
// lognormals has relative standard deviation sqrt((exp(s²) - 1) / |T|), which
// is also the standard deviation of its log to first order; the estimate of
// E[||w||²] from V rows adds (s² / 2) sqrt(2 / (dV)). We allow 5 standard
// deviations, and check that this is tighter than the ||h||² term itself.
TEST(MaxisLossTest, GhostMatchesTheExactTail) {
  constexpr int64_t kVocab = 20000, kDim = 64, kLow = 16;
  const double sigma = 1.0 / 12;
  const std::vector<float> weight = RandomNormal(kVocab * kDim, 9, static_cast<float>(sigma));
  std::vector<int32_t> candidates;  // Independent of h: the tail is an unbiased sample.
  for (int32_t v = 5; v < kVocab; v += 97) candidates.push_back(v);
  const int64_t tail = kVocab - static_cast<int64_t>(candidates.size()) - 1;
  MaxisConfig config = Config(kLow, 1.0f, true, 100);
  for (int row = 0; row < 4; ++row) {
    const std::vector<float> hidden = RandomNormal(kDim, 100 + row);
    const int32_t target = 1 + row;  // Not in C.
    const LinearHeadShape shape{1, kDim, kVocab};
    const LinearHeadInputs inputs{hidden.data(), weight.data(), &target, nullptr};
    config.use_ghost = true;
    const auto with = MaxisLossWithCandidates(shape, inputs, candidates, config, false);
    config.use_ghost = false;
    const auto without = MaxisLossWithCandidates(shape, inputs, candidates, config, false);
    ASSERT_TRUE(with.ok() && without.ok()) << with.status() << without.status();
    const auto exact = LinearCrossEntropy(shape, inputs, false);
    ASSERT_TRUE(exact.ok());

    for (const int64_t dims : {kDim, kLow}) {
      const bool main = dims == kDim;
      double target_logit = 0.0, norm = 0.0, mean_norm = 0.0;
      for (int64_t j = 0; j < dims; ++j) {
        target_logit += double{hidden[j]} * weight[target * kDim + j];
        norm += double{hidden[j]} * hidden[j];
      }
      for (int64_t v = 0; v < kVocab; ++v) {
        for (int64_t j = 0; j < dims; ++j)
          mean_norm += double{weight[v * kDim + j]} * weight[v * kDim + j];
      }
      mean_norm /= kVocab;
      // The ghost the loss used: exp(t + L_with) = exp(t + L_without) + exp(g).
      const double l_with = main ? with->main_loss : with->aux_loss;
      const double l_without = main ? without->main_loss : without->aux_loss;
      const double ghost = target_logit + l_without + std::log(std::expm1(l_with - l_without));
      const double norm_term = norm * mean_norm / (2.0 * dims);
      EXPECT_NEAR(ghost, std::log(static_cast<double>(tail)) + norm_term, 1e-4);

      std::vector<double> logits;
      for (int32_t v = 0; v < kVocab; ++v) {
        if (v == target || std::binary_search(candidates.begin(), candidates.end(), v)) continue;
        double z = 0.0;
        for (int64_t j = 0; j < dims; ++j) z += double{hidden[j]} * weight[v * kDim + j];
        logits.push_back(z);
      }
      ASSERT_EQ(static_cast<int64_t>(logits.size()), tail);
      const double max = *std::max_element(logits.begin(), logits.end());
      double sum = 0.0;
      for (double z : logits) sum += std::exp(z - max);
      const double exact_tail = max + std::log(sum);

      const double s2 = norm * mean_norm / dims;
      const double sd =
          std::sqrt(std::expm1(s2) / tail + (s2 / 2) * (s2 / 2) * 2.0 / (dims * kVocab));
      EXPECT_LT(5 * sd, norm_term / 2) << "the tolerance would not see the ||h||² term";
      EXPECT_NEAR(ghost, exact_tail, 5 * sd) << "row " << row << " dims " << dims;
      // log(a + exp(x)) is 1-Lipschitz in x, so the main loss is as close to exact CE.
      if (main) {
        EXPECT_NEAR(with->main_loss, exact->loss, 5 * sd) << "row " << row;
      }
    }
  }
}

// Brute force: each scout's scores in float64, sorted by (score desc, id asc).
std::vector<int32_t> BruteForceCandidates(const Problem& p, const MaxisConfig& config,
                                          int64_t* per_scout) {
  const int64_t d = p.shape.hidden, v = p.shape.vocab;
  const int64_t scouts = (p.shape.tokens + config.scout_stride - 1) / config.scout_stride;
  const int64_t k = std::min(v, std::max<int64_t>(1, config.candidate_budget / scouts));
  *per_scout = k;
  std::set<int32_t> ids;
  for (int64_t r = 0; r < p.shape.tokens; r += config.scout_stride) {
    std::vector<std::pair<double, int32_t>> scored;
    for (int32_t c = 0; c < v; ++c) {
      double s = 0.0;
      for (int64_t j = 0; j < config.low_dim; ++j)
        s += double{p.hidden[r * d + j]} * p.weight[c * d + j];
      scored.push_back({-s, c});
    }
    std::sort(scored.begin(), scored.end());
    for (int64_t j = 0; j < k; ++j) ids.insert(scored[j].second);
  }
  return {ids.begin(), ids.end()};
}

struct CandidateCase {
  int64_t n, v, stride, budget;
};

class MaxisCandidatesTest : public ::testing::TestWithParam<CandidateCase> {};

TEST_P(MaxisCandidatesTest, MatchesBruteForceTopK) {
  const CandidateCase c = GetParam();
  const Problem p = MakeProblem(c.n, 16, c.v, false, 10 + c.v);
  MaxisConfig config = Config(8, 0.2f, true, c.budget);
  config.scout_stride = c.stride;
  const auto candidates = MaxisCandidates(p.shape, p.hidden.data(), p.weight.data(), config);
  ASSERT_TRUE(candidates.ok()) << candidates.status();
  int64_t k = 0;
  const std::vector<int32_t> expected = BruteForceCandidates(p, config, &k);
  EXPECT_EQ(*candidates, expected);
  EXPECT_TRUE(std::adjacent_find(candidates->begin(), candidates->end(),
                                 [](int32_t a, int32_t b) { return a >= b; }) == candidates->end());
  const int64_t scouts = (c.n + c.stride - 1) / c.stride;
  EXPECT_GE(static_cast<int64_t>(candidates->size()), k);
  EXPECT_LE(static_cast<int64_t>(candidates->size()), scouts * k);
  if (scouts == 1) {
    EXPECT_EQ(static_cast<int64_t>(candidates->size()), k);
  }
}

INSTANTIATE_TEST_SUITE_P(Configs, MaxisCandidatesTest,
                         ::testing::Values(CandidateCase{7, 9000, 3,
                                                         20},  // 3 scouts, k = 6, 3 tiles.
                                           CandidateCase{10, 500, 1, 4},   // K < #scouts: k = 1.
                                           CandidateCase{3, 300, 8, 17},   // One scout: |C| = k.
                                           CandidateCase{12, 4096, 4, 50}  // V = one tile exactly.
                                           ));

TEST(MaxisCandidatesTest, IdenticalScoutsGiveNoDuplicates) {
  Problem p = MakeProblem(2, 16, 200, false, 11);
  std::copy_n(p.hidden.begin(), 16, p.hidden.begin() + 16);
  MaxisConfig config = Config(8, 0.2f, true, 20);
  config.scout_stride = 1;
  const auto candidates = MaxisCandidates(p.shape, p.hidden.data(), p.weight.data(), config);
  ASSERT_TRUE(candidates.ok());
  EXPECT_EQ(candidates->size(), 10u);  // k = 20 / 2 scouts, the same 10 ids twice.
  EXPECT_TRUE(std::is_sorted(candidates->begin(), candidates->end()));
}

// Small integers make the scores exact in fp32 whatever the summation order,
// so the ties below are real ties. Ids 100, 5000 and 8500 (in the first,
// second and third tile of 4096) score 2, every other row 1; id 3 would win on all dimensions.
TEST(MaxisCandidatesTest, TiesGoToTheLowerIdAcrossTiles) {
  constexpr int64_t kVocab = 9000, kDim = 4;
  std::vector<float> weight(kVocab * kDim, 0.0f);
  for (int64_t v = 0; v < kVocab; ++v) weight[v * kDim] = 1.0f;
  for (int64_t v : {100, 5000, 8500}) weight[v * kDim] = 2.0f;
  weight[3 * kDim + 2] = 100.0f;
  const std::vector<float> hidden = {1.0f, 3.0f, 1.0f, 1.0f};
  MaxisConfig config = Config(2, 0.2f, true, 2);
  const LinearHeadShape shape{1, kDim, kVocab};
  auto candidates = MaxisCandidates(shape, hidden.data(), weight.data(), config);
  ASSERT_TRUE(candidates.ok());
  EXPECT_EQ(*candidates, (std::vector<int32_t>{100, 5000}));
  config.candidate_budget = 5;
  candidates = MaxisCandidates(shape, hidden.data(), weight.data(), config);
  ASSERT_TRUE(candidates.ok());
  EXPECT_EQ(*candidates, (std::vector<int32_t>{0, 1, 100, 5000, 8500}));
}

void ExpectInvalid(const absl::Status& status, const std::string& text) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_NE(status.message().find(text), std::string::npos)
      << "\"" << status.message() << "\" does not name " << text;
}

TEST(MaxisValidationTest, ConfigNamesTheField) {
  const LinearHeadShape shape{8, 16, 100};
  EXPECT_TRUE(ValidateMaxisConfig(shape, Config(16, 0.0f, true, 98)).ok());
  ExpectInvalid(ValidateMaxisConfig(shape, Config(17, 0.2f)), "MaxisConfig.low_dim");
  ExpectInvalid(ValidateMaxisConfig(shape, Config(0, 0.2f)), "MaxisConfig.low_dim");
  MaxisConfig config = Config(8, 0.2f);
  config.scout_stride = 0;
  ExpectInvalid(ValidateMaxisConfig(shape, config), "MaxisConfig.scout_stride");
  ExpectInvalid(ValidateMaxisConfig(shape, Config(8, 0.2f, true, 0)),
                "MaxisConfig.candidate_budget");
  ExpectInvalid(ValidateMaxisConfig(shape, Config(8, 0.2f, true, 99)),
                "MaxisConfig.candidate_budget");
  EXPECT_TRUE(ValidateMaxisConfig(shape, Config(8, 0.2f, false, 1000)).ok());
  ExpectInvalid(ValidateMaxisConfig(shape, Config(8, -0.1f)), "MaxisConfig.aux_weight");
  ExpectInvalid(ValidateMaxisConfig(shape, Config(8, std::nanf(""))), "MaxisConfig.aux_weight");
  ExpectInvalid(ValidateMaxisConfig({8, 0, 100}, Config(8, 0.2f)), "LinearHeadShape.hidden");
}

TEST(MaxisValidationTest, CandidatesAndInputs) {
  Problem p = MakeProblem(4, 8, 10, false, 12);
  const MaxisConfig config = Config(4, 0.2f);
  auto loss = [&](const std::vector<int32_t>& candidates, bool use_ghost = true) {
    MaxisConfig c = config;
    c.use_ghost = use_ghost;
    return MaxisLossWithCandidates(p.shape, p.Inputs(), candidates, c, true).status();
  };
  EXPECT_TRUE(loss({0, 3, 9}).ok());
  EXPECT_TRUE(loss({}).ok());  // Only the target and the ghost.
  ExpectInvalid(loss({0, 10}), "candidates[1]");
  ExpectInvalid(loss({-1, 3}), "candidates[0]");
  ExpectInvalid(loss({3, 2}), "candidates[1]");
  ExpectInvalid(loss({2, 2}), "sorted and unique");
  // The ghost needs V - |C| - 1 >= 1: 8 candidates leave 1 row, 9 none.
  EXPECT_TRUE(loss({0, 1, 2, 3, 4, 5, 6, 7}).ok());
  ExpectInvalid(loss({0, 1, 2, 3, 4, 5, 6, 7, 8}), "ghost");
  EXPECT_TRUE(loss({0, 1, 2, 3, 4, 5, 6, 7, 8}, false).ok());
  EXPECT_TRUE(loss({0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, false).ok());

  p.targets[2] = 10;
  ExpectInvalid(loss({0}), "targets[2]");
  ExpectInvalid(MaxisLoss(p.shape, p.Inputs(), config, true).status(), "targets[2]");
  p.targets[2] = 0;
  ExpectInvalid(MaxisCandidates(p.shape, nullptr, p.weight.data(), config).status(), "hidden");
  ExpectInvalid(MaxisLoss(p.shape, p.Inputs(), Config(9, 0.2f), true).status(),
                "MaxisConfig.low_dim");
}

}  // namespace
}  // namespace maximus::kernels
