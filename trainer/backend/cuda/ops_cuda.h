// The CUDA kernels of the CUDA backend's own ops (those with no kernel of
// their own in kernels/): gathers and scatters, RMSNorm, RoPE, the gated
// activation, adds, and the fused clip + AdamW pass. Each launcher is
// asynchronous on `stream` and returns the launch's status; the definitions
// they must match are the CPU backend's (cpu/cpu_backend.cc), which the
// conformance suite holds them to.

#ifndef MAXIMUS_TRAINER_BACKEND_CUDA_OPS_CUDA_H_
#define MAXIMUS_TRAINER_BACKEND_CUDA_OPS_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/gated_activation.h"

namespace maximus::trainer::cuda {

// --- Elementwise (elementwise.cu) ----------------------------------------------
absl::Status FillCuda(float* x, int64_t n, float value, cudaStream_t stream);
// out = a + b (out may alias a or b).
absl::Status AddCuda(const float* a, const float* b, int64_t n, float* out, cudaStream_t stream);
absl::Status GatedActivationCuda(kernels::Activation activation, const float* gate,
                                 const float* up, int64_t n, float* out, cudaStream_t stream);
absl::Status GatedActivationBackwardCuda(kernels::Activation activation, const float* gate,
                                         const float* up, const float* dout, int64_t n,
                                         float* dgate, float* dup, cudaStream_t stream);

// --- Embedding rows (embedding.cu) ---------------------------------------------
// out[i, :] = scale * table[ids[i], :].
absl::Status EmbedCuda(const int32_t* ids, int64_t n, const float* table, int64_t d, float scale,
                       float* out, cudaStream_t stream);

// The scatter of the embedding's backward without floating-point atomics:
// the ids are sorted with their positions (stable), and each distinct id
// sums its rows in position order, so the result has the same bits on every
// run. Holds the sort's buffers between calls.
class EmbeddingScatter {
 public:
  EmbeddingScatter() = default;
  EmbeddingScatter(const EmbeddingScatter&) = delete;
  EmbeddingScatter& operator=(const EmbeddingScatter&) = delete;
  ~EmbeddingScatter();

  // dtable[ids[i], :] += scale * dout[i, :].
  absl::Status Run(const int32_t* ids, int64_t n, const float* dout, int64_t d, float scale,
                   float* dtable, cudaStream_t stream);

 private:
  absl::Status Reserve(int64_t n);

  int64_t capacity_ = 0;
  int32_t* positions_in_ = nullptr;
  int32_t* sorted_ids_ = nullptr;
  int32_t* sorted_positions_ = nullptr;
  void* sort_temp_ = nullptr;
  size_t sort_temp_bytes_ = 0;
};

// table[ids[r], :] += rows[r, :] for r < count, with the ids distinct (as
// MAXIS's sparse gradient rows are), so no two threads write one element.
absl::Status AddRowsCuda(const int32_t* ids, const float* rows, int64_t count, int64_t d,
                         float* table, cudaStream_t stream);

// --- Normalisation and rotation (norm_rope.cu) ---------------------------------
// Gemma's RMSNorm: out = x * rstd * (1 + weight), rstd = 1 / sqrt(mean(x²) + eps).
absl::Status RmsNormCuda(const float* x, const float* weight, int64_t rows, int64_t d, float eps,
                         float* out, float* rstd, cudaStream_t stream);
// dx overwritten; dweight += Σ_rows dout · x · rstd, summed per column in a
// fixed order (partials in `workspace`, RmsNormWorkspaceFloats(rows, d)
// floats).
absl::Status RmsNormBackwardCuda(const float* x, const float* weight, const float* rstd,
                                 const float* dout, int64_t rows, int64_t d, float* dx,
                                 float* dweight, float* workspace, cudaStream_t stream);
int64_t RmsNormWorkspaceFloats(int64_t rows, int64_t d);

// Rotate-half RoPE in place on [batch, seq, heads, head_dim], angles formed
// in float64 as the CPU backend forms them.
absl::Status RopeCuda(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                      int64_t position_offset, float theta, bool inverse, cudaStream_t stream);

// --- Scoring (log_softmax.cu) ----------------------------------------------------
// out[r] = logits[r, targets[r]] - logsumexp(logits[r, :]) for r < rows, in
// fp32 with a float64 sum; NaN where the target is outside [0, vocab).
absl::Status TargetLogSoftmaxCuda(const float* logits, int64_t rows, int64_t vocab,
                                  const int32_t* targets, float* out, cudaStream_t stream);

// --- Optimizer (optimizer.cu) -------------------------------------------------
// Per-element AdamW scalars (optim/adamw.h's meaning).
struct AdamWScalars {
  float beta1, beta2, one_minus_beta1, one_minus_beta2, eps;
  float decay;  // 1 - lr * weight_decay (segments with decay).
  float step_size;
  float bias_correction2_sqrt;
};

// Blocks of the fixed-order gradient norm for n elements.
int64_t GradientNormBlocks(int64_t n);
// grads *= grad_scale (skipped when 1), then Σ grads² in float64: a partial
// per fixed block into `partials` (GradientNormBlocks(n) doubles), summed in
// block order into *sum_of_squares (device).
absl::Status ScaleAndSumSquaresCuda(float* grads, int64_t n, float grad_scale, double* partials,
                                    double* sum_of_squares, cudaStream_t stream);
// grads *= clip (when clip != 1) and one AdamW step over every element;
// element i decays when the run of segments it lies in does: runs are given
// by `run_starts` (ascending, run_starts[0] = 0) and `run_decays`.
absl::Status AdamWCuda(const AdamWScalars& scalars, float clip, int64_t n, const int64_t* run_starts,
                       const uint8_t* run_decays, int64_t runs, float* params, float* grads,
                       float* m, float* v, cudaStream_t stream);

}  // namespace maximus::trainer::cuda

#endif  // MAXIMUS_TRAINER_BACKEND_CUDA_OPS_CUDA_H_
