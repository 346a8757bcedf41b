// The exact linear cross-entropy of cross_entropy.h on the GPU: bf16 inputs,
// fp32 accumulation, forward and backward in one call.
//
// Tokens are processed in chunks of `chunk_tokens` rows. For each chunk, one
// GEMM computes the chunk's fp32 logits against the whole vocabulary; one
// kernel per row takes the log-sum-exp and overwrites nothing but a bf16
// gradient-of-logits buffer, (softmax - onehot) * m_i / M; two more GEMMs give
// dH for the chunk and accumulate dW. So the work is the three N x V x d GEMMs
// the loss needs, and memory holds chunk_tokens x V logits, never N x V.

#ifndef MAXIMUS_KERNELS_CROSS_ENTROPY_CUDA_H_
#define MAXIMUS_KERNELS_CROSS_ENTROPY_CUDA_H_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/bf16.h"
#include "kernels/cross_entropy.h"
#include "kernels/cublas_handle.h"
#include "kernels/device_buffer.h"

namespace maximus::kernels {

// Device pointers to the inputs of a linear-head loss (layouts as in
// LinearHeadInputs). `loss_mask` may be null (all ones).
struct LinearHeadDeviceInputs {
  const Bf16Bits* hidden = nullptr;  // N x d
  const Bf16Bits* weight = nullptr;  // V x d
  const int32_t* targets = nullptr;  // N
  const uint8_t* loss_mask = nullptr;
};

// Device pointers for the results; null skips an output.
struct CrossEntropyDeviceOutputs {
  float* loss = nullptr;         // 1 value: mean over unmasked tokens (required).
  float* token_loss = nullptr;   // N values, 0 where masked.
  float* grad_hidden = nullptr;  // N x d, overwritten.
  float* grad_weight = nullptr;  // V x d, dense, overwritten.
};

class LinearCrossEntropyCuda {
 public:
  struct Options {
    int64_t chunk_tokens = 2048;  // Rows of logits held at once.
  };

  // Allocates the workspace for `shape` (see workspace_bytes()).
  static absl::StatusOr<LinearCrossEntropyCuda> Create(const LinearHeadShape& shape,
                                                       const Options& options);

  // Forward and, where outputs ask for them, backward. Synchronises with
  // `stream` once at the end to report out-of-range targets as
  // INVALID_ARGUMENT naming the first bad position.
  absl::Status Run(const LinearHeadDeviceInputs& inputs, const CrossEntropyDeviceOutputs& outputs,
                   cudaStream_t stream = nullptr);

  // Device memory held besides inputs and outputs.
  int64_t workspace_bytes() const;

 private:
  LinearCrossEntropyCuda(const LinearHeadShape& shape, const Options& options, CublasHandle handle)
      : shape_(shape), options_(options), handle_(std::move(handle)) {}

  LinearHeadShape shape_;
  Options options_;
  CublasHandle handle_;
  DeviceBuffer<float> logits_;          // chunk_tokens x V
  DeviceBuffer<Bf16Bits> grad_logits_;  // chunk_tokens x V
  DeviceBuffer<float> token_loss_;      // N
  DeviceBuffer<int32_t> status_;        // [0]: first bad target position + 1, or 0.
  DeviceBuffer<float> mask_count_;      // [0]: M = max(1, sum of the mask)
};

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_CROSS_ENTROPY_CUDA_H_
