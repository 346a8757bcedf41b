// Causal attention on the GPU, fp32 in and out, without a queries × keys
// matrix: the forward streams key tiles through shared memory with an online
// softmax and keeps each row's log-sum-exp; the backward recomputes
// probabilities from it. Tiles a query cannot see (causal future, outside the
// sliding window) are skipped, so a layer with window W costs O(T·W).
// Deterministic: no atomics, every output element is summed by one thread (or
// one warp's tensor-core fragment) in a fixed order. The products run on
// tensor cores in TF32 or as fp32 FMAs (FlashAttentionMath).
//
// Layouts as in attention_shape.h; all pointers are device memory. head_dim
// may be 1 to 256 (padded inside to 32, 64, 128 or 256). The CPU reference is
// kernels/attention.h.

#ifndef MAXIMUS_KERNELS_FLASH_ATTENTION_CUDA_H_
#define MAXIMUS_KERNELS_FLASH_ATTENTION_CUDA_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/attention_shape.h"

namespace maximus::kernels {

// The arithmetic of the tiled kernels. A forward of at most 4 queries per
// sequence (decoding) runs a kernel of its own in fp32 whatever the choice.
enum class FlashAttentionMath {
  // kTf32 where head_dim >= 32, kFp32 below (little work, tiny tiles).
  kAuto,
  // fp32 FMAs throughout: relative error about 1e-6 against the CPU.
  kFp32,
  // Tensor cores (WMMA) on tiles rounded to TF32, 10-bit mantissa, with fp32
  // accumulation and fp32 softmax: relative error about 1e-3.
  kTf32,
};

// out [batch, queries, heads, head_dim]; lse [batch, heads, queries] receives
// each row's log-sum-exp of scaled scores (null when no backward follows, as
// when decoding). Asynchronous on `stream`.
absl::Status FlashAttentionForwardCuda(const AttentionShape& shape, const float* q, const float* k,
                                       const float* v, float* out, float* lse,
                                       cudaStream_t stream = nullptr,
                                       FlashAttentionMath math = FlashAttentionMath::kAuto);

// delta [batch, heads, queries] = Σ dout·out over each row's head_dim: the
// row term of the backward (FlashAttentionBackwardBf16Cuda takes it
// precomputed). Asynchronous on `stream`.
absl::Status FlashAttentionDeltaCuda(const AttentionShape& shape, const float* out,
                                     const float* dout, float* delta,
                                     cudaStream_t stream = nullptr);

// The gradients from the forward's `out` and `lse` and dout (like out). Needs
// query_offset 0. dq is overwritten; dk and dv are overwritten in their first
// keys() rows of each sequence. delta_workspace holds batch·heads·queries
// floats (Σ dout·out per row). Asynchronous on `stream`.
absl::Status FlashAttentionBackwardCuda(const AttentionShape& shape, const float* q, const float* k,
                                        const float* v, const float* out, const float* lse,
                                        const float* dout, float* dq, float* dk, float* dv,
                                        float* delta_workspace, cudaStream_t stream = nullptr,
                                        FlashAttentionMath math = FlashAttentionMath::kAuto);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_FLASH_ATTENTION_CUDA_H_
