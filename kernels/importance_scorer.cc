#include "kernels/importance_scorer.h"

#include <cmath>
#include <cstdint>
#include <vector>

#include "absl/strings/str_cat.h"
#include "kernels/cpu_parallel.h"

namespace maximus::kernels {
namespace {

absl::Status CheckSizes(int64_t input, int64_t rows) {
  if (input <= 0 || rows < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("importance scorer: bad sizes, input ", input, ", rows ", rows));
  }
  return absl::OkStatus();
}

// h[j] = tanh(W1[j] · x + b1[j]) for one row.
template <typename T>
void HiddenOf(const ImportanceScorerWeights<T>& w, const T* x, T* h) {
  for (int64_t j = 0; j < kImportanceScorerWidth; ++j) {
    const T* wj = w.in_weight + j * w.input;
    T sum = w.in_bias[j];
    for (int64_t c = 0; c < w.input; ++c) sum += wj[c] * x[c];
    h[j] = std::tanh(sum);
  }
}

}  // namespace

template <typename T>
absl::Status ImportanceScores(const ImportanceScorerWeights<T>& w, int64_t rows, const T* x,
                              T* scores) {
  if (absl::Status s = CheckSizes(w.input, rows); !s.ok()) return s;
  ParallelRanges(rows, 16, [&](int64_t begin, int64_t end) {
    T h[kImportanceScorerWidth];
    for (int64_t r = begin; r < end; ++r) {
      HiddenOf(w, x + r * w.input, h);
      T score = *w.out_bias;
      for (int64_t j = 0; j < kImportanceScorerWidth; ++j) score += w.out_weight[j] * h[j];
      scores[r] = score;
    }
  });
  return absl::OkStatus();
}

template <typename T>
absl::Status ImportanceScoresBackward(const ImportanceScorerWeights<T>& w, int64_t rows, const T* x,
                                      const T* dscores, T* dx,
                                      const ImportanceScorerGrads<T>& grads) {
  if (absl::Status s = CheckSizes(w.input, rows); !s.ok()) return s;
  constexpr int64_t width = kImportanceScorerWidth;
  // dpre[r, j] = dscore_r · w2_j · (1 − h_rj²); h kept for dw2.
  std::vector<T> h(rows * width), dpre(rows * width);
  ParallelRanges(rows, 16, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* hr = h.data() + r * width;
      HiddenOf(w, x + r * w.input, hr);
      T* dr = dx + r * w.input;
      for (int64_t j = 0; j < width; ++j) {
        dpre[r * width + j] = dscores[r] * w.out_weight[j] * (T{1} - hr[j] * hr[j]);
        const T* wj = w.in_weight + j * w.input;
        for (int64_t c = 0; c < w.input; ++c) dr[c] += dpre[r * width + j] * wj[c];
      }
    }
  });
  // One owner per hidden unit j: row j of dW1, b1[j], w2[j].
  ParallelRanges(width, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      T* dwj = grads.in_weight + j * w.input;
      T dbias = 0, dout = 0;
      for (int64_t r = 0; r < rows; ++r) {
        const T d = dpre[r * width + j];
        const T* xr = x + r * w.input;
        for (int64_t c = 0; c < w.input; ++c) dwj[c] += d * xr[c];
        dbias += d;
        dout += dscores[r] * h[r * width + j];
      }
      grads.in_bias[j] += dbias;
      grads.out_weight[j] += dout;
    }
  });
  T dbias = 0;
  for (int64_t r = 0; r < rows; ++r) dbias += dscores[r];
  *grads.out_bias += dbias;
  return absl::OkStatus();
}

template absl::Status ImportanceScores<float>(const ImportanceScorerWeights<float>&, int64_t,
                                              const float*, float*);
template absl::Status ImportanceScores<double>(const ImportanceScorerWeights<double>&, int64_t,
                                               const double*, double*);
template absl::Status ImportanceScoresBackward<float>(const ImportanceScorerWeights<float>&,
                                                      int64_t, const float*, const float*, float*,
                                                      const ImportanceScorerGrads<float>&);
template absl::Status ImportanceScoresBackward<double>(const ImportanceScorerWeights<double>&,
                                                       int64_t, const double*, const double*,
                                                       double*,
                                                       const ImportanceScorerGrads<double>&);

}  // namespace maximus::kernels
