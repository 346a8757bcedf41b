// The importance scorer of RandNLA attention (randnla_attention.h): per
// token, score = w2 · tanh(W1 x + b1) + b2, hidden → kImportanceScorerWidth →
// 1, a function of that token's hidden state alone (so of the past alone).
// RandNLA attention turns scores into sketch weights sigmoid(score +
// pressure) and ranks its detail tokens by them.
//
// A template so that the tests can check it in float64; the backends use
// float. Rows are split over the shared thread pool, each output with one
// owner, so the bits do not depend on the number of threads.

#ifndef MAXIMUS_KERNELS_IMPORTANCE_SCORER_H_
#define MAXIMUS_KERNELS_IMPORTANCE_SCORER_H_

#include <cstdint>

#include "absl/status/status.h"

namespace maximus::kernels {

inline constexpr int64_t kImportanceScorerWidth = 64;

template <typename T>
struct ImportanceScorerWeights {
  int64_t input = 0;              // d: the hidden size.
  const T* in_weight = nullptr;   // W1 [width, d]
  const T* in_bias = nullptr;     // b1 [width]
  const T* out_weight = nullptr;  // w2 [width]
  const T* out_bias = nullptr;    // b2 [1]
};

// Gradients of the weights, added (+=) to.
template <typename T>
struct ImportanceScorerGrads {
  T* in_weight = nullptr;
  T* in_bias = nullptr;
  T* out_weight = nullptr;
  T* out_bias = nullptr;
};

// scores[r] for each of `rows` rows of x [rows, d].
template <typename T>
absl::Status ImportanceScores(const ImportanceScorerWeights<T>& weights, int64_t rows, const T* x,
                              T* scores);

// dx [rows, d] += the gradient through the scorer of dscores [rows]; the
// weights' gradients are added to `grads`.
template <typename T>
absl::Status ImportanceScoresBackward(const ImportanceScorerWeights<T>& weights, int64_t rows,
                                      const T* x, const T* dscores, T* dx,
                                      const ImportanceScorerGrads<T>& grads);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_IMPORTANCE_SCORER_H_
