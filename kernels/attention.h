// Causal attention on the CPU: the fp32 reference of the CUDA kernels in
// flash_attention_cuda.h, and the CPU backend's implementation.
//
// The forward keeps, per query row, the log-sum-exp of its scaled scores; the
// backward recomputes each probability from it, exp(scale·q·k − lse), so
// neither holds a queries × keys matrix (memory O(rows) besides the tensors).
// Work is spread over the shared thread pool with one owner per output row,
// so the bits do not depend on the number of threads.

#ifndef MAXIMUS_KERNELS_ATTENTION_H_
#define MAXIMUS_KERNELS_ATTENTION_H_

#include "absl/status/status.h"
#include "kernels/attention_shape.h"

namespace maximus::kernels {

// Checks the fields of `shape` (positive sizes, kv_heads dividing heads,
// key_stride covering the keys, window >= 0). Shared with the CUDA entry points.
absl::Status ValidateAttentionShape(const AttentionShape& shape);

// out = softmax(scale · q kᵀ, causal and windowed) v, layouts as in
// AttentionShape. lse [batch, heads, queries] receives the log-sum-exp of each
// row's visible scaled scores; null skips it (decoding).
absl::Status CausalAttention(const AttentionShape& shape, const float* q, const float* k,
                             const float* v, float* out, float* lse);

// The gradients of CausalAttention given dout (like out), from the forward's
// `out` and `lse`. Needs query_offset 0. dq is overwritten; dk and dv are
// overwritten in their first keys() rows of each sequence (rows up to
// KeyStride() beyond them are left alone).
absl::Status CausalAttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                                     const float* v, const float* out, const float* lse,
                                     const float* dout, float* dq, float* dk, float* dv);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_ATTENTION_H_
