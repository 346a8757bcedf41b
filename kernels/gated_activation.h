// The gated MLP activation: out = act(gate) * up, elementwise, with
// act = GELU (tanh approximation, PyTorch's gelu(approximate="tanh"), Gemma's
// "gelu_pytorch_tanh") or SiLU (x·sigmoid(x), SwiGLU). CPU reference; the
// backward gives d(gate) and d(up) from d(out).

#ifndef MAXIMUS_KERNELS_GATED_ACTIVATION_H_
#define MAXIMUS_KERNELS_GATED_ACTIVATION_H_

#include <cstdint>

namespace maximus::kernels {

enum class Activation {
  kGeluTanh,  // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x³)))
  kSilu,      // x / (1 + exp(-x))
};

// act(x) and act'(x), in float32 as PyTorch evaluates them.
float ActivationValue(Activation activation, float x);
float ActivationDerivative(Activation activation, float x);

// out[i] = act(gate[i]) * up[i] for i in [begin, end).
void GatedActivation(Activation activation, const float* gate, const float* up, int64_t begin,
                     int64_t end, float* out);
// dgate[i] = dout[i] * up[i] * act'(gate[i]); dup[i] = dout[i] * act(gate[i]).
void GatedActivationBackward(Activation activation, const float* gate, const float* up,
                             const float* dout, int64_t begin, int64_t end, float* dgate,
                             float* dup);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_GATED_ACTIVATION_H_
