// AdamW (Adam with decoupled weight decay, Loshchilov & Hutter 2019) and
// global gradient-norm clipping, CPU versions, with the semantics of PyTorch's
// torch.optim.AdamW and torch.nn.utils.clip_grad_norm_.
//
// The per-element update is written out below so that the CUDA backend can
// reimplement it with the same meaning; optimizer_test.cc checks this version
// against a float64 reference.

#ifndef MAXIMUS_TRAINER_OPTIM_ADAMW_H_
#define MAXIMUS_TRAINER_OPTIM_ADAMW_H_

#include <cstdint>
#include <utility>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace maximus::trainer {

struct AdamWConfig {
  float beta1 = 0.9f;         // Decay of the first moment m, in [0, 1).
  float beta2 = 0.95f;        // Decay of the second moment v, in [0, 1).
  float eps = 1e-8f;          // Added to sqrt(v_hat), > 0.
  float weight_decay = 0.1f;  // Decoupled decay coefficient, >= 0.
};

// INVALID_ARGUMENT naming the field unless beta1 and beta2 are in [0, 1), eps
// is finite and > 0 and weight_decay is finite and >= 0.
absl::Status ValidateAdamWConfig(const AdamWConfig& config);

// One AdamW step over n parameters, in place on param, m and v. `step` is the
// 1-based step count t (the number of updates including this one), lr the
// learning rate of this step, and `weight_decay_scale` multiplies
// config.weight_decay (0 for parameters that take no decay: norms, biases).
// With b1 = 1 - beta1^t and b2 = 1 - beta2^t, each element does, in float32
// (the scalars are formed in float64 and rounded once to float32):
//
//   param *= 1 - lr * weight_decay * weight_decay_scale   (decoupled decay,
//                                                          on the old param)
//   m      = beta1 * m + (1 - beta1) * grad
//   v      = beta2 * v + (1 - beta2) * grad * grad
//   param -= (lr / b1) * (m / (sqrt(v) / sqrt(b2) + eps))
//
// which is param -= lr * m_hat / (sqrt(v_hat) + eps) with m_hat = m / b1 and
// v_hat = v / b2, in the order PyTorch evaluates it (PyTorch updates m as
// lerp(m, grad, 1 - beta1), equal up to rounding). m and v start at zero.
//
// Large n is split over `threads` threads (0: one per core). Elements are
// independent, so the result is bitwise the same for any thread count.
// Preconditions: ValidateAdamWConfig(config) is OK, step >= 1, and the four
// arrays hold n floats each and do not overlap (n <= 0 does nothing).
void AdamWUpdate(const AdamWConfig& config, int64_t step, float lr, float weight_decay_scale,
                 int64_t n, float* param, const float* grad, float* m, float* v, int threads = 0);

// Global L2-norm clipping over several gradient buffers (pointer, element
// count). Returns the total norm sqrt(sum of g^2 over every buffer), summed in
// float64 in a fixed order (fixed blocks, combined in buffer and block order),
// so it is the same for any thread count. If max_norm > 0 and the norm exceeds
// it, every gradient is multiplied by the float32 rounding of
// max_norm / (norm + 1e-6), as clip_grad_norm_ does; max_norm <= 0 only
// measures. A non-finite norm leaves the gradients untouched: the caller should
// skip the step (PyTorch would scale them to NaN).
double ClipGradientNorm(absl::Span<const std::pair<float*, int64_t>> grads, double max_norm,
                        int threads = 0);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_OPTIM_ADAMW_H_
