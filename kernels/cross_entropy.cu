#include <cuda_bf16.h>

#include <algorithm>
#include <climits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/cuda_status.h"
#include "kernels/gemm_cuda.h"
#include "kernels/reduce.cuh"

namespace maximus::kernels {
namespace {

constexpr int kRowThreads = 1024;
constexpr int kReduceThreads = 1024;

// status[0] = INT_MAX (no bad target yet); mask_count[0] = max(1, sum mask).
__global__ void PrepareKernel(const uint8_t* __restrict__ mask, int64_t tokens,
                              int32_t* __restrict__ status, float* __restrict__ mask_count) {
  __shared__ double scratch[32];
  double count = 0.0;
  for (int64_t i = threadIdx.x; i < tokens; i += blockDim.x) {
    count += mask == nullptr ? 1.0 : (mask[i] != 0 ? 1.0 : 0.0);
  }
  count = BlockSum(count, scratch);
  if (threadIdx.x == 0) {
    status[0] = INT_MAX;
    mask_count[0] = static_cast<float>(count > 1.0 ? count : 1.0);
  }
}

// One block per row of the chunk: log-sum-exp over the vocabulary, the
// token's loss, and (when grad != null) the scaled gradient of its logits.
template <bool kVec4>
__global__ void __launch_bounds__(kRowThreads)
    RowKernel(const float* __restrict__ logits, int64_t vocab, int64_t row0,
              const int32_t* __restrict__ targets, const uint8_t* __restrict__ mask,
              const float* __restrict__ mask_count, __nv_bfloat16* __restrict__ grad,
              float* __restrict__ token_loss, int32_t* __restrict__ status) {
  __shared__ MaxSum scratch[32];
  const int64_t r = blockIdx.x;
  const int64_t i = row0 + r;
  const float* z = logits + r * vocab;
  __nv_bfloat16* g = grad == nullptr ? nullptr : grad + r * vocab;
  const int32_t y = targets[i];
  const bool on = mask == nullptr || mask[i] != 0;
  const bool bad = on && (y < 0 || y >= vocab);
  if (!on || bad) {
    if (bad && threadIdx.x == 0) atomicMin(status, static_cast<int32_t>(i));
    if (threadIdx.x == 0) token_loss[i] = bad ? NAN : 0.0f;
    if (g != nullptr) {
      for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) g[j] = __float2bfloat16(0.0f);
    }
    return;
  }

  MaxSum acc = EmptyMaxSum();
  if constexpr (kVec4) {
    const float4* z4 = reinterpret_cast<const float4*>(z);
    for (int64_t j = threadIdx.x; j < vocab / 4; j += blockDim.x) {
      const float4 v = z4[j];
      const float m = fmaxf(fmaxf(v.x, v.y), fmaxf(v.z, v.w));
      acc = MergeMaxSum(acc,
                        {m, __expf(v.x - m) + __expf(v.y - m) + __expf(v.z - m) + __expf(v.w - m)});
    }
  } else {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) acc = MergeMaxSum(acc, {z[j], 1.0f});
  }
  acc = BlockMergeMaxSum(acc, scratch);
  const float lse = acc.max + __logf(acc.sum);
  if (threadIdx.x == 0) token_loss[i] = lse - z[y];
  if (g == nullptr) return;

  const float scale = 1.0f / mask_count[0];
  if constexpr (kVec4) {
    const float4* z4 = reinterpret_cast<const float4*>(z);
    uint2* g4 = reinterpret_cast<uint2*>(g);
    for (int64_t j = threadIdx.x; j < vocab / 4; j += blockDim.x) {
      const float4 v = z4[j];
      float p[4] = {__expf(v.x - lse) * scale, __expf(v.y - lse) * scale, __expf(v.z - lse) * scale,
                    __expf(v.w - lse) * scale};
      if (y / 4 == j) p[y % 4] -= scale;
      const __nv_bfloat162 lo = __floats2bfloat162_rn(p[0], p[1]);
      const __nv_bfloat162 hi = __floats2bfloat162_rn(p[2], p[3]);
      uint2 packed;
      packed.x = *reinterpret_cast<const unsigned*>(&lo);
      packed.y = *reinterpret_cast<const unsigned*>(&hi);
      g4[j] = packed;
    }
  } else {
    for (int64_t j = threadIdx.x; j < vocab; j += blockDim.x) {
      g[j] = __float2bfloat16(__expf(z[j] - lse) * scale - (j == y ? scale : 0.0f));
    }
  }
}

// loss = sum_i token_loss_i / M (masked tokens hold 0).
__global__ void MeanLossKernel(const float* __restrict__ token_loss, int64_t tokens,
                               const float* __restrict__ mask_count, float* __restrict__ loss) {
  __shared__ double scratch[32];
  double sum = 0.0;
  for (int64_t i = threadIdx.x; i < tokens; i += blockDim.x) sum += token_loss[i];
  sum = BlockSum(sum, scratch);
  if (threadIdx.x == 0) loss[0] = static_cast<float>(sum / mask_count[0]);
}

}  // namespace

absl::StatusOr<LinearCrossEntropyCuda> LinearCrossEntropyCuda::Create(const LinearHeadShape& shape,
                                                                      const Options& options) {
  MAXIMUS_RETURN_IF_ERROR(ValidateLinearHeadShape(shape));
  if (options.chunk_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("Options.chunk_tokens must be >= 1, got ", options.chunk_tokens));
  }
  MAXIMUS_ASSIGN_OR_RETURN(CublasHandle handle, CublasHandle::Create());
  LinearCrossEntropyCuda ce(shape, options, std::move(handle));
  const int64_t rows = std::min(options.chunk_tokens, shape.tokens);
  auto logits = DeviceBuffer<float>::Allocate(rows * shape.vocab);
  auto grad = DeviceBuffer<Bf16Bits>::Allocate(rows * shape.vocab);
  auto token_loss = DeviceBuffer<float>::Allocate(shape.tokens);
  auto status = DeviceBuffer<int32_t>::Allocate(1);
  auto mask_count = DeviceBuffer<float>::Allocate(1);
  for (const absl::Status& s : {logits.status(), grad.status(), token_loss.status(),
                                status.status(), mask_count.status()}) {
    MAXIMUS_RETURN_IF_ERROR(s);
  }
  ce.logits_ = *std::move(logits);
  ce.grad_logits_ = *std::move(grad);
  ce.token_loss_ = *std::move(token_loss);
  ce.status_ = *std::move(status);
  ce.mask_count_ = *std::move(mask_count);
  return ce;
}

int64_t LinearCrossEntropyCuda::workspace_bytes() const {
  return logits_.bytes() + grad_logits_.bytes() + token_loss_.bytes() + status_.bytes() +
         mask_count_.bytes();
}

absl::Status LinearCrossEntropyCuda::Run(const LinearHeadDeviceInputs& in,
                                         const CrossEntropyDeviceOutputs& out,
                                         cudaStream_t stream) {
  if (in.hidden == nullptr || in.weight == nullptr || in.targets == nullptr) {
    return absl::InvalidArgumentError("hidden, weight and targets must be non-null");
  }
  if (out.loss == nullptr) return absl::InvalidArgumentError("outputs.loss must be non-null");
  MAXIMUS_RETURN_IF_ERROR(handle_.SetStream(stream));
  const int64_t n = shape_.tokens, d = shape_.hidden, v = shape_.vocab;
  const bool want_grads = out.grad_hidden != nullptr || out.grad_weight != nullptr;
  float* token_loss = out.token_loss != nullptr ? out.token_loss : token_loss_.data();

  PrepareKernel<<<1, kReduceThreads, 0, stream>>>(in.loss_mask, n, status_.data(),
                                                  mask_count_.data());
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
  const int64_t chunk = std::min(options_.chunk_tokens, n);
  for (int64_t row0 = 0; row0 < n; row0 += chunk) {
    const int64_t rows = std::min(chunk, n - row0);
    const Bf16Bits* hidden = in.hidden + row0 * d;
    // logits[rows x V] = H[chunk] · Wᵀ
    MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), GemmDims{rows, v, d, false, true},
                                     DType::kBFloat16, DType::kFloat32, 1.0f, hidden, in.weight,
                                     0.0f, logits_.data()));
    __nv_bfloat16* grad =
        want_grads ? reinterpret_cast<__nv_bfloat16*>(grad_logits_.data()) : nullptr;
    if (v % 4 == 0) {
      RowKernel<true><<<rows, kRowThreads, 0, stream>>>(logits_.data(), v, row0, in.targets,
                                                        in.loss_mask, mask_count_.data(), grad,
                                                        token_loss, status_.data());
    } else {
      RowKernel<false><<<rows, kRowThreads, 0, stream>>>(logits_.data(), v, row0, in.targets,
                                                         in.loss_mask, mask_count_.data(), grad,
                                                         token_loss, status_.data());
    }
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());
    if (out.grad_hidden != nullptr) {
      // dH[chunk] = G · W
      MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), GemmDims{rows, d, v}, DType::kBFloat16,
                                       DType::kFloat32, 1.0f, grad_logits_.data(), in.weight, 0.0f,
                                       out.grad_hidden + row0 * d));
    }
    if (out.grad_weight != nullptr) {
      // dW (+)= Gᵀ · H[chunk]
      MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle_.get(), GemmDims{v, d, rows, true, false},
                                       DType::kBFloat16, DType::kFloat32, 1.0f, grad_logits_.data(),
                                       hidden, row0 == 0 ? 0.0f : 1.0f, out.grad_weight));
    }
  }
  MeanLossKernel<<<1, kReduceThreads, 0, stream>>>(token_loss, n, mask_count_.data(), out.loss);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetLastError());

  int32_t first_bad = INT_MAX;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&first_bad, status_.data(), sizeof(first_bad),
                                               cudaMemcpyDeviceToHost, stream));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream));
  if (first_bad != INT_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat("targets[", first_bad, "] is outside [0, ", v, ")"));
  }
  return absl::OkStatus();
}

}  // namespace maximus::kernels
