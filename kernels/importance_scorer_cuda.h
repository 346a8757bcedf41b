// The RandNLA importance scorer (importance_scorer.h) on the GPU, fp32
// FMAs throughout (the scores rank the detail tokens, so they follow the CPU
// reference closely rather than through a bf16 GEMM). Device pointers,
// asynchronous on a stream, deterministic: every output has one owner and a
// fixed order of summation.

#ifndef MAXIMUS_KERNELS_IMPORTANCE_SCORER_CUDA_H_
#define MAXIMUS_KERNELS_IMPORTANCE_SCORER_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/importance_scorer.h"

namespace maximus::kernels {

// scores [rows] of x [rows, input].
absl::Status ImportanceScoresCuda(const ImportanceScorerWeights<float>& weights, int64_t rows,
                                  const float* x, float* scores, cudaStream_t stream = nullptr);

// Floats of ImportanceScoresBackwardCuda's workspace.
int64_t ImportanceScoresBackwardWorkspaceFloats(int64_t rows, int64_t input);

// dx [rows, input] += the gradient through the scorer of dscores [rows]; the
// weights' gradients are added to `grads`.
absl::Status ImportanceScoresBackwardCuda(const ImportanceScorerWeights<float>& weights,
                                          int64_t rows, const float* x, const float* dscores,
                                          float* dx, const ImportanceScorerGrads<float>& grads,
                                          float* workspace, cudaStream_t stream = nullptr);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_IMPORTANCE_SCORER_CUDA_H_
