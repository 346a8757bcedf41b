// Exact cross-entropy of a linear head, loss = CE(H · Wᵀ, y), at vocabulary
// sizes where the N x V logits do not fit: the baseline loss (--loss=ce), the
// validation metric, and the yardstick MAXIS is judged by.
//
// Definitions (row-major, N tokens, hidden size d, vocabulary V):
//   z_i   = W h_i                                  (logits of token i, length V)
//   lse_i = log sum_v exp(z_iv)
//   loss  = sum_i m_i (lse_i - z_{i,y_i}) / max(1, sum_i m_i)     (m: loss mask)
//   dH_i  = m_i / M * (softmax(z_i) - onehot(y_i)) W
//   dW    = sum_i m_i / M * (softmax(z_i) - onehot(y_i))ᵀ h_i     (M = max(1, sum m))
//
// The CPU reference (cross_entropy.cc, fp32 with OpenBLAS GEMMs) tiles over
// the vocabulary with an online log-sum-exp and never holds an N x V buffer.
// The CUDA version (cross_entropy.cu, bf16 inputs, fp32 accumulation) does
// the same on the GPU.

#ifndef MAXIMUS_KERNELS_CROSS_ENTROPY_H_
#define MAXIMUS_KERNELS_CROSS_ENTROPY_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace maximus::kernels {

struct LinearHeadShape {
  int64_t tokens = 0;  // N
  int64_t hidden = 0;  // d
  int64_t vocab = 0;   // V
};

// INVALID_ARGUMENT naming the field unless all sizes are positive.
absl::Status ValidateLinearHeadShape(const LinearHeadShape& shape);

// Inputs of a linear-head loss. `hidden` is N x d, `weight` V x d (the tied
// embedding), `targets` N ids in [0, V), `loss_mask` N bytes (0 or 1) or null
// for all ones.
struct LinearHeadInputs {
  const float* hidden = nullptr;
  const float* weight = nullptr;
  const int32_t* targets = nullptr;
  const uint8_t* loss_mask = nullptr;
};

// INVALID_ARGUMENT unless hidden, weight and targets are non-null, every mask
// byte is 0 or 1 and every unmasked target is in [0, V) (the message names the
// first bad position).
absl::Status ValidateLinearHeadInputs(const LinearHeadShape& shape, const LinearHeadInputs& inputs);

struct CrossEntropyResult {
  double loss = 0.0;               // Mean over unmasked tokens.
  std::vector<float> token_loss;   // N values, lse_i - z_{i,y_i} (0 where masked).
  std::vector<float> grad_hidden;  // N x d; empty unless gradients were asked for.
  std::vector<float> grad_weight;  // V x d; empty unless gradients were asked for.
};

// CPU reference. `vocab_tile` bounds the logits held at once (N x vocab_tile).
absl::StatusOr<CrossEntropyResult> LinearCrossEntropy(const LinearHeadShape& shape,
                                                      const LinearHeadInputs& inputs,
                                                      bool compute_gradients,
                                                      int64_t vocab_tile = 4096);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_CROSS_ENTROPY_H_
