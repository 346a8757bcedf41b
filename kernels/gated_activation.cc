#include "kernels/gated_activation.h"

#include <cmath>

namespace maximus::kernels {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;
constexpr float kGeluCubic = 0.044715f;

}  // namespace

float ActivationValue(Activation activation, float x) {
  if (activation == Activation::kSilu) return x / (1.0f + std::exp(-x));
  const float inner = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

float ActivationDerivative(Activation activation, float x) {
  if (activation == Activation::kSilu) {
    const float sig = 1.0f / (1.0f + std::exp(-x));
    return sig * (1.0f + x * (1.0f - sig));
  }
  const float inner = kSqrt2OverPi * (x + kGeluCubic * x * x * x);
  const float t = std::tanh(inner);
  const float dinner = kSqrt2OverPi * (1.0f + 3.0f * kGeluCubic * x * x);
  return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * dinner;
}

void GatedActivation(Activation activation, const float* gate, const float* up, int64_t begin,
                     int64_t end, float* out) {
  for (int64_t i = begin; i < end; ++i) out[i] = ActivationValue(activation, gate[i]) * up[i];
}

void GatedActivationBackward(Activation activation, const float* gate, const float* up,
                             const float* dout, int64_t begin, int64_t end, float* dgate,
                             float* dup) {
  for (int64_t i = begin; i < end; ++i) {
    dup[i] = dout[i] * ActivationValue(activation, gate[i]);
    dgate[i] = dout[i] * up[i] * ActivationDerivative(activation, gate[i]);
  }
}

}  // namespace maximus::kernels
