// The gated activations against float64 definitions and central differences.

#include "kernels/gated_activation.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace maximus::kernels {
namespace {

double GeluTanh64(double x) {
  return 0.5 * x * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}
double Silu64(double x) { return x / (1.0 + std::exp(-x)); }

TEST(GatedActivationTest, MatchesTheDefinitions) {
  for (double x = -8.0; x <= 8.0; x += 0.125) {
    EXPECT_NEAR(ActivationValue(Activation::kGeluTanh, static_cast<float>(x)), GeluTanh64(x),
                2e-6 * (1 + std::fabs(x)))
        << x;
    EXPECT_NEAR(ActivationValue(Activation::kSilu, static_cast<float>(x)), Silu64(x),
                2e-6 * (1 + std::fabs(x)))
        << x;
  }
  // GELU(1) with the tanh approximation, as torch.nn.functional.gelu(approximate="tanh").
  EXPECT_NEAR(ActivationValue(Activation::kGeluTanh, 1.0f), 0.8411920070648193, 1e-6);
}

TEST(GatedActivationTest, DerivativesMatchCentralDifferences) {
  for (Activation a : {Activation::kGeluTanh, Activation::kSilu}) {
    for (double x = -6.0; x <= 6.0; x += 0.1) {
      const double h = 1e-4;
      const double f = a == Activation::kSilu ? (Silu64(x + h) - Silu64(x - h)) / (2 * h)
                                              : (GeluTanh64(x + h) - GeluTanh64(x - h)) / (2 * h);
      EXPECT_NEAR(ActivationDerivative(a, static_cast<float>(x)), f, 1e-5) << x;
    }
  }
}

TEST(GatedActivationTest, GatedForwardAndBackward) {
  const std::vector<float> gate = {-2.5f, -0.3f, 0.0f, 0.7f, 3.1f};
  const std::vector<float> up = {1.5f, -2.0f, 0.25f, 4.0f, -0.5f};
  const std::vector<float> dout = {0.3f, -1.1f, 2.0f, 0.5f, 0.9f};
  const int64_t n = static_cast<int64_t>(gate.size());
  for (Activation a : {Activation::kGeluTanh, Activation::kSilu}) {
    std::vector<float> out(n), dgate(n), dup(n);
    GatedActivation(a, gate.data(), up.data(), 0, n, out.data());
    GatedActivationBackward(a, gate.data(), up.data(), dout.data(), 0, n, dgate.data(), dup.data());
    for (int64_t i = 0; i < n; ++i) {
      EXPECT_FLOAT_EQ(out[i], ActivationValue(a, gate[i]) * up[i]);
      EXPECT_FLOAT_EQ(dup[i], dout[i] * ActivationValue(a, gate[i]));
      EXPECT_FLOAT_EQ(dgate[i], dout[i] * up[i] * ActivationDerivative(a, gate[i]));
    }
  }
}

}  // namespace
}  // namespace maximus::kernels
