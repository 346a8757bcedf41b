// RandNLA attention on the GPU (the construction: randnla_attention.md; the
// CPU reference: randnla_attention.h), fp32 in and out, with the reference's
// layouts and semantics: q [batch, queries, heads, head_dim], k and v [batch,
// key_stride, kv_heads, head_dim] (rotated), scores [batch, key_stride], the
// sketch factors [sketch_outer, block_outer], [sketch_inner, block_inner] and
// the scale [1], all device memory. head_dim 1 to 256; any length (the last
// block may be partial); GQA.
//
// Deterministic: no atomics; every output element is summed by one thread or
// one warp in a fixed order, so a call gives the same bits on every run.
// Causal as the reference is: no kernel reads an input at a position after the
// output it writes (randnla_attention.md, "Why output t depends on inputs ≤ t
// alone").

#ifndef MAXIMUS_KERNELS_RANDNLA_ATTENTION_CUDA_H_
#define MAXIMUS_KERNELS_RANDNLA_ATTENTION_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/randnla_attention.h"

namespace maximus::kernels {

// What the forward keeps for the backward, in device memory, laid out as
// RandnlaSaved: lse [batch, heads, queries], detail [batch, Blocks(), detail]
// (ascending positions, −1 past the count), sketch_keys and sketch_values
// [batch, Blocks(), kv_heads, sketch, head_dim] (block 0: zeros).
struct RandnlaDeviceSaved {
  float* lse = nullptr;
  int32_t* detail = nullptr;
  float* sketch_keys = nullptr;
  float* sketch_values = nullptr;
};

// Elements of each saved buffer and of the backward's workspace for `shape`.
struct RandnlaCudaSizes {
  int64_t lse = 0;
  int64_t detail = 0;
  int64_t sketch = 0;  // Each of sketch_keys and sketch_values.
  int64_t backward_workspace = 0;  // floats
};
RandnlaCudaSizes RandnlaCudaSizesOf(const RandnlaShape& shape);

// ValidateRandnlaShape plus the kernels' limits, INVALID_ARGUMENT naming the
// one exceeded: head_dim <= 256, block and detail <= 4096, block + detail +
// sketch <= 8192.
absl::Status ValidateRandnlaCudaShape(const RandnlaShape& shape);

// out like q; `saved` (every pointer sized by RandnlaCudaSizesOf) is filled in:
// the attention itself reads the detail positions and sketches from it.
// Asynchronous on `stream`.
absl::Status RandnlaAttentionCuda(const RandnlaShape& shape, const float* q, const float* k,
                                  const float* v, const float* scores,
                                  const SketchFactors<float>& sketch, float* out,
                                  const RandnlaDeviceSaved& saved, cudaStream_t stream = nullptr);

// The gradients given dout, from the forward's `out` and `saved`. Needs
// query_offset 0 and key_stride = queries. dq, dk, dv and dscores ([batch,
// queries]) are overwritten; `grads` are added to. `workspace` holds
// RandnlaCudaSizesOf(shape).backward_workspace floats. Asynchronous on
// `stream`.
absl::Status RandnlaAttentionBackwardCuda(const RandnlaShape& shape, const float* q,
                                          const float* k, const float* v, const float* scores,
                                          const SketchFactors<float>& sketch, const float* out,
                                          const RandnlaDeviceSaved& saved, const float* dout,
                                          float* dq, float* dk, float* dv, float* dscores,
                                          const SketchFactorGrads<float>& grads, float* workspace,
                                          cudaStream_t stream = nullptr);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_RANDNLA_ATTENTION_CUDA_H_
