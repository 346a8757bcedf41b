// Causal flash attention on bf16 tensor cores: Q, K, V (and dO) in bf16,
// products accumulated in fp32, the softmax in fp32, outputs and gradients
// in fp32. The kernels keep scores and probabilities in registers
// (mma.sync m16n8k16, the accumulator layout reused as the next product's
// operand), so only Q, K, V and dO tiles pass through shared memory. Same
// semantics as flash_attention_cuda.h (causal, sliding window, GQA, no
// queries × keys matrix, deterministic: no atomics); the CPU reference is
// kernels/attention.h, run on the same bf16-rounded inputs.
//
// Needs head_dim a multiple of 8 and at most 256, and 16-byte aligned
// q, k, v, dout (BF16AttentionSupported). Layouts as in attention_shape.h.

#ifndef MAXIMUS_KERNELS_FLASH_ATTENTION_BF16_CUDA_H_
#define MAXIMUS_KERNELS_FLASH_ATTENTION_BF16_CUDA_H_

#include <cuda_runtime_api.h>

#include "absl/status/status.h"
#include "kernels/attention_shape.h"
#include "kernels/bf16.h"

namespace maximus::kernels {

// Whether the bf16 kernels take this shape (head_dim % 8 == 0, <= 256).
bool Bf16AttentionSupported(const AttentionShape& shape);

// out [batch, queries, heads, head_dim] (fp32); lse [batch, heads, queries]
// receives each row's natural log-sum-exp of scaled scores (may be null).
// Asynchronous on `stream`.
absl::Status FlashAttentionForwardBf16Cuda(const AttentionShape& shape, const Bf16Bits* q,
                                           const Bf16Bits* k, const Bf16Bits* v, float* out,
                                           float* lse, cudaStream_t stream = nullptr);

// The gradients from the forward's lse, dout (bf16) and delta [batch, heads,
// queries] = Σ dout·out per row (FlashAttentionDeltaCuda). Needs
// query_offset 0. dq is overwritten; dk and dv are overwritten in their first
// keys() rows of each sequence. Asynchronous on `stream`.
absl::Status FlashAttentionBackwardBf16Cuda(const AttentionShape& shape, const Bf16Bits* q,
                                            const Bf16Bits* k, const Bf16Bits* v,
                                            const Bf16Bits* dout, const float* lse,
                                            const float* delta, float* dq, float* dk, float* dv,
                                            cudaStream_t stream = nullptr);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_FLASH_ATTENTION_BF16_CUDA_H_
