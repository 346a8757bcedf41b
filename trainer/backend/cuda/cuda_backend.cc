#include "trainer/backend/cuda/cuda_backend.h"

#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/status_macros.h"
#include "kernels/bf16.h"
#include "kernels/cast_cuda.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/cublas_handle.h"
#include "kernels/cuda_status.h"
#include "kernels/cuda_stream.h"
#include "kernels/device_buffer.h"
#include "kernels/flash_attention_bf16_cuda.h"
#include "kernels/flash_attention_cuda.h"
#include "kernels/gemm_cuda.h"
#include "kernels/gpu_probe.h"
#include "kernels/importance_scorer_cuda.h"
#include "kernels/maxis_cuda.h"
#include "kernels/random_cuda.h"
#include "kernels/randnla_attention_cuda.h"
#include "trainer/backend/cuda/ops_cuda.h"

namespace maximus::trainer {
namespace {

using kernels::CudaStatus;
using kernels::DeviceBuffer;

// Device memory, zeroed on the backend's stream at allocation.
class CudaBuffer : public Buffer {
 public:
  CudaBuffer(void* data, int64_t size, DType dtype) : data_(data), size_(size), dtype_(dtype) {}
  ~CudaBuffer() override { cudaFree(data_); }
  DType dtype() const override { return dtype_; }
  int64_t size() const override { return size_; }
  void* raw() override { return data_; }
  const void* raw() const override { return data_; }

 private:
  void* data_;
  int64_t size_;
  DType dtype_;
};

// The log-sum-exp of each query row, and the backward's row dot products.
class CudaAttentionState : public AttentionState {
 public:
  DeviceBuffer<float> lse;
  DeviceBuffer<float> delta;
};

// Grows `buffer` to at least n elements (contents not kept).
template <typename T>
absl::Status Reserve(DeviceBuffer<T>& buffer, int64_t n) {
  if (static_cast<int64_t>(buffer.size()) >= n) return absl::OkStatus();
  buffer = DeviceBuffer<T>();  // Free before allocating the larger one.
  MAXIMUS_ASSIGN_OR_RETURN(buffer, DeviceBuffer<T>::Allocate(static_cast<size_t>(n)));
  return absl::OkStatus();
}

bool SameMaxisSetup(const kernels::LinearHeadShape& a, const kernels::MaxisConfig& ca,
                    const kernels::LinearHeadShape& b, const kernels::MaxisConfig& cb) {
  return a.tokens == b.tokens && a.hidden == b.hidden && a.vocab == b.vocab &&
         ca.low_dim == cb.low_dim && ca.scout_stride == cb.scout_stride &&
         ca.candidate_budget == cb.candidate_budget && ca.aux_weight == cb.aux_weight &&
         ca.use_ghost == cb.use_ghost;
}

bool SameShape(const kernels::LinearHeadShape& a, const kernels::LinearHeadShape& b) {
  return a.tokens == b.tokens && a.hidden == b.hidden && a.vocab == b.vocab;
}

// What RandNLA attention's backward needs (kernels/randnla_attention_cuda.h),
// sized by each forward.
class CudaRandnlaState : public AttentionState {
 public:
  DeviceBuffer<float> lse;
  DeviceBuffer<int32_t> detail;
  DeviceBuffer<float> sketch_keys, sketch_values;
  kernels::RandnlaCudaSizes sizes;

  absl::Status Prepare(const RandnlaShape& shape) {
    sizes = kernels::RandnlaCudaSizesOf(shape);
    MAXIMUS_RETURN_IF_ERROR(Reserve(lse, sizes.lse));
    MAXIMUS_RETURN_IF_ERROR(Reserve(detail, sizes.detail));
    MAXIMUS_RETURN_IF_ERROR(Reserve(sketch_keys, sizes.sketch));
    return Reserve(sketch_values, sizes.sketch);
  }
  kernels::RandnlaDeviceSaved Saved() {
    return {lse.data(), detail.data(), sketch_keys.data(), sketch_values.data()};
  }
};

}  // namespace

struct CudaBackend::State {
  Options options;
  std::string description;
  uint64_t memory_bytes = 0;
  kernels::CudaStream stream;
  std::optional<kernels::CublasHandle> cublas;
  absl::Status error;

  // The uploaded batch.
  DeviceBuffer<int32_t> inputs, targets;
  DeviceBuffer<uint8_t> loss_mask;
  int64_t batch_tokens = 0;
  int64_t counted_tokens = 0;

  // Scratch.
  DeviceBuffer<float> norm_workspace;
  DeviceBuffer<double> norm_partials;
  DeviceBuffer<double> norm_sum;
  DeviceBuffer<kernels::Bf16Bits> hidden_bf16, weight_bf16;
  DeviceBuffer<kernels::Bf16Bits> attention_bf16;  // Q, K, V (and dO) rounded
  DeviceBuffer<kernels::Bf16Bits> gemm_a_bf16, gemm_b_bf16;  // GEMM inputs rounded
  DeviceBuffer<float> loss_values;  // 3 floats
  DeviceBuffer<float> token_loss;
  DeviceBuffer<float> dense_grad;  // exact CE's dW before it is added in
  DeviceBuffer<float> logits;
  DeviceBuffer<int32_t> grad_ids;
  DeviceBuffer<float> grad_rows;
  cuda::EmbeddingScatter scatter;
  CudaRandnlaState randnla_scratch;  // a forward's state when no backward follows
  DeviceBuffer<float> randnla_workspace, scorer_workspace;

  // The losses, made for one shape and kept while it lasts.
  std::optional<kernels::MaxisCuda> maxis;
  kernels::LinearHeadShape maxis_shape;
  kernels::MaxisConfig maxis_config;
  std::optional<kernels::LinearCrossEntropyCuda> cross_entropy;
  kernels::LinearHeadShape cross_entropy_shape;

  // The last arena's runs of segments with one weight-decay setting.
  std::vector<int64_t> host_run_starts;
  std::vector<uint8_t> host_run_decays;
  DeviceBuffer<int64_t> run_starts;
  DeviceBuffer<uint8_t> run_decays;

  cudaStream_t s() const { return stream.get(); }

  // The exact-CE kernel for `shape`, made when the shape changes.
  absl::Status PrepareCrossEntropy(const kernels::LinearHeadShape& shape) {
    if (cross_entropy.has_value() && SameShape(cross_entropy_shape, shape)) {
      return absl::OkStatus();
    }
    cross_entropy.reset();
    kernels::LinearCrossEntropyCuda::Options ce_options;
    ce_options.chunk_tokens = std::min(shape.tokens, options.cross_entropy_chunk_tokens);
    MAXIMUS_ASSIGN_OR_RETURN(kernels::LinearCrossEntropyCuda made,
                             kernels::LinearCrossEntropyCuda::Create(shape, ce_options));
    cross_entropy.emplace(std::move(made));
    cross_entropy_shape = shape;
    return absl::OkStatus();
  }

  // The loss kernels read bf16: the hidden states and the tied embedding are
  // rounded once per call (a memory-bound pass over V x d).
  absl::StatusOr<kernels::LinearHeadDeviceInputs> Bf16LossInputs(
      const kernels::LinearHeadShape& shape, const float* hidden, const float* weight) {
    const int64_t n = shape.tokens, d = shape.hidden, vocab = shape.vocab;
    MAXIMUS_RETURN_IF_ERROR(Reserve(hidden_bf16, n * d));
    MAXIMUS_RETURN_IF_ERROR(Reserve(weight_bf16, vocab * d));
    MAXIMUS_RETURN_IF_ERROR(kernels::CastFloatToBf16Cuda(hidden, hidden_bf16.data(), n * d, s()));
    MAXIMUS_RETURN_IF_ERROR(
        kernels::CastFloatToBf16Cuda(weight, weight_bf16.data(), vocab * d, s()));
    kernels::LinearHeadDeviceInputs inputs;
    inputs.hidden = hidden_bf16.data();
    inputs.weight = weight_bf16.data();
    return inputs;
  }
};

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const Options& options) {
  MAXIMUS_RETURN_IF_ERROR(kernels::ProbeGpu().status());
  // Before anything is allocated: memory, streams and handles belong to the
  // device current when they are made.
  MAXIMUS_ASSIGN_OR_RETURN(const kernels::GpuInfo gpu, kernels::UseGpu(options.device));
  auto state = std::make_unique<State>();
  state->options = options;
  state->description = gpu.ToString();
  state->memory_bytes = static_cast<uint64_t>(gpu.global_memory_bytes);
  MAXIMUS_ASSIGN_OR_RETURN(state->stream, kernels::CudaStream::Create());
  MAXIMUS_ASSIGN_OR_RETURN(kernels::CublasHandle handle,
                           kernels::CublasHandle::Create(state->stream.get()));
  state->cublas.emplace(std::move(handle));
  MAXIMUS_ASSIGN_OR_RETURN(state->norm_sum, DeviceBuffer<double>::Allocate(1));
  MAXIMUS_ASSIGN_OR_RETURN(state->loss_values, DeviceBuffer<float>::Allocate(3));
  return std::unique_ptr<CudaBackend>(new CudaBackend(std::move(state)));
}

CudaBackend::CudaBackend(std::unique_ptr<State> state) : state_(std::move(state)) {}

CudaBackend::~CudaBackend() {
  if (state_ != nullptr) cudaStreamSynchronize(state_->s());
}

const std::string& CudaBackend::device_description() const { return state_->description; }

uint64_t CudaBackend::MemoryBytes() const { return state_->memory_bytes; }

int64_t CudaBackend::DeviceBytesInUse() const {
  size_t free = 0, total = 0;
  if (cudaMemGetInfo(&free, &total) != cudaSuccess) return 0;
  return static_cast<int64_t>(total - free);
}

void CudaBackend::Record(absl::Status status) {
  if (!status.ok() && state_->error.ok()) state_->error = std::move(status);
}

absl::Status CudaBackend::TakeError() { return std::exchange(state_->error, absl::OkStatus()); }

std::unique_ptr<Buffer> CudaBackend::Allocate(int64_t n, DType dtype) {
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1) * DTypeBytes(dtype));
  void* data = nullptr;
  const cudaError_t error = cudaMalloc(&data, bytes);
  if (error != cudaSuccess) {
    // The interface has no error path for allocation: running out of device
    // memory ends the process with the numbers a user needs to size the run.
    size_t free = 0, total = 0;
    cudaMemGetInfo(&free, &total);
    std::fprintf(stderr,
                 "cuda backend: cannot allocate %.1f MiB of device memory (%s); %.1f MiB free of "
                 "%.1f MiB. Use a smaller batch, sequence or model.\n",
                 bytes / 1048576.0, cudaGetErrorString(error), free / 1048576.0,
                 total / 1048576.0);
    std::exit(1);
  }
  Record(CudaStatus(cudaMemsetAsync(data, 0, bytes, state_->s()), "cudaMemsetAsync"));
  return std::make_unique<CudaBuffer>(data, n, dtype);
}

void CudaBackend::CopyToHost(const float* src, int64_t n, float* host) {
  Record(CudaStatus(cudaMemcpyAsync(host, src, n * sizeof(float), cudaMemcpyDeviceToHost,
                                    state_->s()),
                    "cudaMemcpyAsync to host"));
  Record(CudaStatus(cudaStreamSynchronize(state_->s()), "cudaStreamSynchronize"));
}

void CudaBackend::CopyFromHost(const float* host, int64_t n, float* dst) {
  Record(CudaStatus(cudaMemcpyAsync(dst, host, n * sizeof(float), cudaMemcpyHostToDevice,
                                    state_->s()),
                    "cudaMemcpyAsync to device"));
  // The caller may free `host` on return.
  Record(CudaStatus(cudaStreamSynchronize(state_->s()), "cudaStreamSynchronize"));
}

void CudaBackend::Fill(float* x, int64_t n, float value) {
  Record(cuda::FillCuda(x, n, value, state_->s()));
}

void CudaBackend::Copy(const float* src, int64_t n, float* dst) {
  if (n <= 0) return;
  Record(CudaStatus(
      cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice, state_->s()),
      "cudaMemcpyAsync"));
}

void CudaBackend::FillNormal(float* x, int64_t n, uint64_t seed, float stddev) {
  Record(kernels::FillNormalCuda(x, n, seed, stddev, 0, state_->s()));
}

absl::StatusOr<DeviceBatch> CudaBackend::UploadBatch(const TokenBatch& batch) {
  const int64_t n = batch.rows * batch.seq;
  if (batch.rows <= 0 || batch.seq <= 0 || static_cast<int64_t>(batch.inputs.size()) != n ||
      static_cast<int64_t>(batch.targets.size()) != n ||
      (!batch.loss_mask.empty() && static_cast<int64_t>(batch.loss_mask.size()) != n)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed token batch: ", batch.rows, " x ", batch.seq, " with ", batch.inputs.size(),
        " inputs, ", batch.targets.size(), " targets, ", batch.loss_mask.size(), " mask values"));
  }
  State& st = *state_;
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.inputs, n));
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.targets, n));
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.loss_mask, n));
  // Pageable host memory: the copies are staged before they return, so the
  // batch may change afterwards.
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.inputs.data(), batch.inputs.data(),
                                               n * sizeof(int32_t), cudaMemcpyHostToDevice, st.s()));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.targets.data(), batch.targets.data(),
                                               n * sizeof(int32_t), cudaMemcpyHostToDevice, st.s()));
  st.batch_tokens = n;
  st.counted_tokens = n;
  if (!batch.loss_mask.empty()) {
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.loss_mask.data(), batch.loss_mask.data(), n,
                                                 cudaMemcpyHostToDevice, st.s()));
    st.counted_tokens = 0;
    for (uint8_t m : batch.loss_mask) st.counted_tokens += m != 0;
  }
  DeviceBatch device;
  device.rows = batch.rows;
  device.seq = batch.seq;
  device.inputs = st.inputs.data();
  device.targets = st.targets.data();
  device.loss_mask = batch.loss_mask.empty() ? nullptr : st.loss_mask.data();
  return device;
}

absl::Status CudaBackend::Synchronize() {
  Record(CudaStatus(cudaStreamSynchronize(state_->s()), "cudaStreamSynchronize"));
  return TakeError();
}

void* CudaBackend::NativeStream() { return state_->s(); }

absl::Status CudaBackend::Gemm(const kernels::GemmDims& dims, float alpha, const float* a,
                               const float* b, float beta, float* c) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  switch (state_->options.gemm_precision) {
    case GemmPrecision::kFp32:
    case GemmPrecision::kTf32:
      return kernels::GemmCuda(state_->cublas->get(), dims, kernels::DType::kFloat32,
                               kernels::DType::kFloat32, alpha, a, b, beta, c,
                               state_->options.gemm_precision == GemmPrecision::kTf32
                                   ? kernels::GemmMath::kTf32
                                   : kernels::GemmMath::kFloat32);
    case GemmPrecision::kBf16:
      break;
  }
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateGemmDims(dims));
  // The stored extent of each input: its last stored row ends at
  // (rows - 1) · leading + row length.
  const int64_t a_rows = dims.transpose_a ? dims.k : dims.m;
  const int64_t a_size = (a_rows - 1) * dims.LeadingA() + (dims.transpose_a ? dims.m : dims.k);
  const int64_t b_rows = dims.transpose_b ? dims.n : dims.k;
  const int64_t b_size = (b_rows - 1) * dims.LeadingB() + (dims.transpose_b ? dims.k : dims.n);
  MAXIMUS_RETURN_IF_ERROR(Reserve(state_->gemm_a_bf16, a_size));
  MAXIMUS_RETURN_IF_ERROR(Reserve(state_->gemm_b_bf16, b_size));
  MAXIMUS_RETURN_IF_ERROR(
      kernels::CastFloatToBf16Cuda(a, state_->gemm_a_bf16.data(), a_size, state_->s()));
  MAXIMUS_RETURN_IF_ERROR(
      kernels::CastFloatToBf16Cuda(b, state_->gemm_b_bf16.data(), b_size, state_->s()));
  return kernels::GemmCuda(state_->cublas->get(), dims, kernels::DType::kBFloat16,
                           kernels::DType::kFloat32, alpha, state_->gemm_a_bf16.data(),
                           state_->gemm_b_bf16.data(), beta, c);
}

absl::StatusOr<CudaBackend::GemmPrecision> CudaBackend::ParseGemmPrecision(
    absl::string_view name) {
  if (name == "bf16") return GemmPrecision::kBf16;
  if (name == "tf32") return GemmPrecision::kTf32;
  if (name == "fp32") return GemmPrecision::kFp32;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown GEMM precision \"", name, "\" (bf16, tf32 or fp32)"));
}

const char* CudaBackend::GemmPrecisionName(GemmPrecision precision) {
  switch (precision) {
    case GemmPrecision::kBf16:
      return "bf16";
    case GemmPrecision::kTf32:
      return "tf32";
    case GemmPrecision::kFp32:
      return "fp32";
  }
  return "?";
}

void CudaBackend::Embed(const int32_t* ids, int64_t n, const float* table, int64_t d, float scale,
                        float* out) {
  Record(cuda::EmbedCuda(ids, n, table, d, scale, out, state_->s()));
}

void CudaBackend::EmbedBackward(const int32_t* ids, int64_t n, const float* dout, int64_t d,
                                float scale, float* dtable) {
  Record(state_->scatter.Run(ids, n, dout, d, scale, dtable, state_->s()));
}

void CudaBackend::RmsNorm(const float* x, const float* weight, int64_t rows, int64_t d, float eps,
                          float* out, float* rstd) {
  Record(cuda::RmsNormCuda(x, weight, rows, d, eps, out, rstd, state_->s()));
}

void CudaBackend::RmsNormBackward(const float* x, const float* weight, const float* rstd,
                                  const float* dout, int64_t rows, int64_t d, float* dx,
                                  float* dweight) {
  absl::Status reserved = Reserve(state_->norm_workspace, cuda::RmsNormWorkspaceFloats(rows, d));
  if (!reserved.ok()) return Record(std::move(reserved));
  Record(cuda::RmsNormBackwardCuda(x, weight, rstd, dout, rows, d, dx, dweight,
                                   state_->norm_workspace.data(), state_->s()));
}

void CudaBackend::Rope(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                       int64_t position_offset, float theta, bool inverse) {
  Record(cuda::RopeCuda(x, batch, seq, heads, head_dim, position_offset, theta, inverse,
                        state_->s()));
}

std::unique_ptr<AttentionState> CudaBackend::NewAttentionState(const AttentionShape& shape) {
  auto state = std::make_unique<CudaAttentionState>();
  const size_t rows = static_cast<size_t>(shape.batch * shape.heads * shape.queries);
  absl::StatusOr<DeviceBuffer<float>> lse = DeviceBuffer<float>::Allocate(rows);
  absl::StatusOr<DeviceBuffer<float>> delta = DeviceBuffer<float>::Allocate(rows);
  if (!lse.ok() || !delta.ok()) {
    Record(lse.ok() ? delta.status() : lse.status());
    return state;
  }
  state->lse = *std::move(lse);
  state->delta = *std::move(delta);
  return state;
}

absl::Status CudaBackend::CausalAttention(const AttentionShape& shape, const float* q,
                                          const float* k, const float* v, float* out,
                                          AttentionState* state) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  float* lse = nullptr;
  if (state != nullptr) {
    auto* cuda_state = static_cast<CudaAttentionState*>(state);
    if (static_cast<int64_t>(cuda_state->lse.size()) < shape.batch * shape.heads * shape.queries) {
      return absl::InternalError("attention state made for a smaller shape");
    }
    lse = cuda_state->lse.data();
  }
  if (UseBf16Attention(shape)) {
    MAXIMUS_ASSIGN_OR_RETURN(AttentionInputsBf16 inputs, RoundAttentionInputs(shape, q, k, v, nullptr));
    return kernels::FlashAttentionForwardBf16Cuda(shape, inputs.q, inputs.k, inputs.v, out, lse,
                                                  state_->s());
  }
  return kernels::FlashAttentionForwardCuda(shape, q, k, v, out, lse, state_->s());
}

bool CudaBackend::UseBf16Attention(const AttentionShape& shape) const {
  // Decoding (a few queries) keeps its fp32 kernel: it reads the cache once.
  return state_->options.bf16_attention && kernels::Bf16AttentionSupported(shape) &&
         shape.queries > 4;
}

absl::StatusOr<CudaBackend::AttentionInputsBf16> CudaBackend::RoundAttentionInputs(
    const AttentionShape& shape, const float* q, const float* k, const float* v,
    const float* dout) {
  // Each piece starts on a 16-byte boundary (8 bf16), as the kernels' copies need.
  auto padded = [](int64_t n) { return (n + 7) / 8 * 8; };
  const int64_t q_size = shape.batch * shape.queries * shape.heads * shape.head_dim;
  const int64_t kv_size = shape.batch * shape.KeyStride() * shape.kv_heads * shape.head_dim;
  const int64_t total = 2 * padded(q_size) + 2 * padded(kv_size);
  MAXIMUS_RETURN_IF_ERROR(Reserve(state_->attention_bf16, total));
  AttentionInputsBf16 inputs;
  kernels::Bf16Bits* at = state_->attention_bf16.data();
  const std::pair<const float*, int64_t> pieces[] = {{q, q_size}, {k, kv_size}, {v, kv_size}, {dout, q_size}};
  const kernels::Bf16Bits** targets[] = {&inputs.q, &inputs.k, &inputs.v, &inputs.dout};
  for (int i = 0; i < 4; ++i) {
    if (pieces[i].first == nullptr) continue;
    MAXIMUS_RETURN_IF_ERROR(
        kernels::CastFloatToBf16Cuda(pieces[i].first, at, pieces[i].second, state_->s()));
    *targets[i] = at;
    at += padded(pieces[i].second);
  }
  return inputs;
}

absl::Status CudaBackend::CausalAttentionBackward(const AttentionShape& shape, const float* q,
                                                  const float* k, const float* v, const float* out,
                                                  const AttentionState& state, const float* dout,
                                                  float* dq, float* dk, float* dv) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  if (shape.query_offset != 0) {
    return absl::InvalidArgumentError("attention backward needs query_offset 0");
  }
  auto& cuda_state = const_cast<CudaAttentionState&>(static_cast<const CudaAttentionState&>(state));
  if (UseBf16Attention(shape)) {
    MAXIMUS_ASSIGN_OR_RETURN(AttentionInputsBf16 inputs, RoundAttentionInputs(shape, q, k, v, dout));
    MAXIMUS_RETURN_IF_ERROR(kernels::FlashAttentionDeltaCuda(shape, out, dout,
                                                             cuda_state.delta.data(), state_->s()));
    return kernels::FlashAttentionBackwardBf16Cuda(shape, inputs.q, inputs.k, inputs.v,
                                                   inputs.dout, cuda_state.lse.data(),
                                                   cuda_state.delta.data(), dq, dk, dv,
                                                   state_->s());
  }
  return kernels::FlashAttentionBackwardCuda(shape, q, k, v, out, cuda_state.lse.data(), dout, dq,
                                             dk, dv, cuda_state.delta.data(), state_->s());
}

absl::Status CudaBackend::ImportanceScores(const kernels::ImportanceScorerWeights<float>& weights,
                                           int64_t rows, const float* x, float* scores) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  return kernels::ImportanceScoresCuda(weights, rows, x, scores, state_->s());
}

absl::Status CudaBackend::ImportanceScoresBackward(
    const kernels::ImportanceScorerWeights<float>& weights, int64_t rows, const float* x,
    const float* dscores, float* dx, const kernels::ImportanceScorerGrads<float>& grads) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  MAXIMUS_RETURN_IF_ERROR(
      Reserve(state_->scorer_workspace,
              kernels::ImportanceScoresBackwardWorkspaceFloats(rows, weights.input)));
  return kernels::ImportanceScoresBackwardCuda(weights, rows, x, dscores, dx, grads,
                                               state_->scorer_workspace.data(), state_->s());
}

std::unique_ptr<AttentionState> CudaBackend::NewRandnlaAttentionState(const RandnlaShape&) {
  return std::make_unique<CudaRandnlaState>();  // sized by each forward
}

absl::Status CudaBackend::RandnlaAttention(const RandnlaShape& shape, const float* q,
                                           const float* k, const float* v, const float* scores,
                                           const kernels::SketchFactors<float>& sketch, float* out,
                                           AttentionState* state) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateRandnlaCudaShape(shape));
  CudaRandnlaState& saved =
      state != nullptr ? static_cast<CudaRandnlaState&>(*state) : state_->randnla_scratch;
  MAXIMUS_RETURN_IF_ERROR(saved.Prepare(shape));
  return kernels::RandnlaAttentionCuda(shape, q, k, v, scores, sketch, out, saved.Saved(),
                                       state_->s());
}

absl::Status CudaBackend::RandnlaAttentionBackward(
    const RandnlaShape& shape, const float* q, const float* k, const float* v, const float* scores,
    const kernels::SketchFactors<float>& sketch, const float* out, const AttentionState& state,
    const float* dout, float* dq, float* dk, float* dv, float* dscores,
    const kernels::SketchFactorGrads<float>& grads) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateRandnlaCudaShape(shape));
  // The kernels only read the state; its buffers are not const-qualified.
  auto& saved = const_cast<CudaRandnlaState&>(static_cast<const CudaRandnlaState&>(state));
  const kernels::RandnlaCudaSizes sizes = kernels::RandnlaCudaSizesOf(shape);
  if (saved.sizes.lse != sizes.lse || saved.sizes.detail != sizes.detail ||
      saved.sizes.sketch != sizes.sketch) {
    return absl::InvalidArgumentError("RandNLA attention backward: state of another shape");
  }
  MAXIMUS_RETURN_IF_ERROR(Reserve(state_->randnla_workspace, sizes.backward_workspace));
  return kernels::RandnlaAttentionBackwardCuda(shape, q, k, v, scores, sketch, out, saved.Saved(),
                                               dout, dq, dk, dv, dscores, grads,
                                               state_->randnla_workspace.data(), state_->s());
}

void CudaBackend::GatedActivation(kernels::Activation activation, const float* gate,
                                  const float* up, int64_t n, float* out) {
  Record(cuda::GatedActivationCuda(activation, gate, up, n, out, state_->s()));
}

void CudaBackend::GatedActivationBackward(kernels::Activation activation, const float* gate,
                                          const float* up, const float* dout, int64_t n,
                                          float* dgate, float* dup) {
  Record(cuda::GatedActivationBackwardCuda(activation, gate, up, dout, n, dgate, dup, state_->s()));
}

void CudaBackend::Add(const float* a, const float* b, int64_t n, float* out) {
  Record(cuda::AddCuda(a, b, n, out, state_->s()));
}

absl::StatusOr<LossOutput> CudaBackend::Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                             const float* hidden, const float* weight,
                                             const DeviceBatch& batch,
                                             const kernels::MaxisConfig& maxis, bool gradients,
                                             float* grad_hidden, float* grad_weight) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateLinearHeadShape(shape));
  State& st = *state_;
  if (shape.tokens != st.batch_tokens) {
    return absl::InvalidArgumentError(absl::StrCat("the loss covers ", shape.tokens,
                                                   " tokens; the uploaded batch holds ",
                                                   st.batch_tokens));
  }
  const int64_t d = shape.hidden, vocab = shape.vocab;
  MAXIMUS_ASSIGN_OR_RETURN(kernels::LinearHeadDeviceInputs inputs,
                           st.Bf16LossInputs(shape, hidden, weight));
  inputs.targets = batch.targets;
  inputs.loss_mask = batch.loss_mask;
  LossOutput output;
  output.counted_tokens = st.counted_tokens;
  float host_loss[3] = {0, 0, 0};
  if (kind == LossKind::kMaxis) {
    if (!st.maxis.has_value() || !SameMaxisSetup(st.maxis_shape, st.maxis_config, shape, maxis)) {
      st.maxis.reset();
      MAXIMUS_ASSIGN_OR_RETURN(kernels::MaxisCuda made, kernels::MaxisCuda::Create(shape, maxis));
      st.maxis.emplace(std::move(made));
      st.maxis_shape = shape;
      st.maxis_config = maxis;
    }
    kernels::MaxisDeviceOutputs outputs;
    outputs.loss = st.loss_values.data();
    if (gradients) {
      MAXIMUS_RETURN_IF_ERROR(Reserve(st.grad_ids, st.maxis->max_grad_rows()));
      MAXIMUS_RETURN_IF_ERROR(Reserve(st.grad_rows, st.maxis->max_grad_rows() * d));
      outputs.grad_hidden = grad_hidden;
      outputs.grad_weight_ids = st.grad_ids.data();
      outputs.grad_weight_rows = st.grad_rows.data();
    }
    MAXIMUS_ASSIGN_OR_RETURN(const kernels::MaxisCuda::Counts counts,
                             st.maxis->Run(inputs, outputs, st.s()));
    if (gradients) {
      MAXIMUS_RETURN_IF_ERROR(cuda::AddRowsCuda(st.grad_ids.data(), st.grad_rows.data(),
                                                counts.grad_rows, d, grad_weight, st.s()));
      output.embedding_grad_rows.resize(counts.grad_rows);
      MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(
          output.embedding_grad_rows.data(), st.grad_ids.data(), counts.grad_rows * sizeof(int32_t),
          cudaMemcpyDeviceToHost, st.s()));
    }
  } else {
    MAXIMUS_RETURN_IF_ERROR(st.PrepareCrossEntropy(shape));
    kernels::CrossEntropyDeviceOutputs outputs;
    outputs.loss = st.loss_values.data();
    if (gradients) {
      MAXIMUS_RETURN_IF_ERROR(Reserve(st.dense_grad, vocab * d));
      outputs.grad_hidden = grad_hidden;
      outputs.grad_weight = st.dense_grad.data();
    }
    MAXIMUS_RETURN_IF_ERROR(st.cross_entropy->Run(inputs, outputs, st.s()));
    if (gradients) {
      MAXIMUS_RETURN_IF_ERROR(
          cuda::AddCuda(grad_weight, st.dense_grad.data(), vocab * d, grad_weight, st.s()));
      output.embedding_grad_dense = true;
    }
  }
  const int64_t values = kind == LossKind::kMaxis ? 3 : 1;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host_loss, st.loss_values.data(),
                                               values * sizeof(float), cudaMemcpyDeviceToHost,
                                               st.s()));
  MAXIMUS_RETURN_IF_ERROR(Synchronize());
  output.loss = host_loss[0];
  output.main_loss = kind == LossKind::kMaxis ? host_loss[1] : host_loss[0];
  return output;
}

absl::StatusOr<std::vector<float>> CudaBackend::TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                              const float* hidden,
                                                              const float* weight,
                                                              const DeviceBatch& batch) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  MAXIMUS_RETURN_IF_ERROR(kernels::ValidateLinearHeadShape(shape));
  State& st = *state_;
  const int64_t n = shape.tokens, d = shape.hidden, vocab = shape.vocab;
  // Scoring is exact: full fp32 logits (not the training loss's bf16), a
  // chunk of rows at a time (about 512 MiB of logits).
  const int64_t chunk = std::max<int64_t>(1, std::min<int64_t>(n, (int64_t{1} << 27) / vocab));
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.logits, chunk * vocab));
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.token_loss, n));
  for (int64_t row = 0; row < n; row += chunk) {
    const int64_t rows = std::min(chunk, n - row);
    kernels::GemmDims dims;
    dims.m = rows;
    dims.n = vocab;
    dims.k = d;
    dims.transpose_b = true;
    MAXIMUS_RETURN_IF_ERROR(kernels::GemmCuda(st.cublas->get(), dims, kernels::DType::kFloat32,
                                              kernels::DType::kFloat32, 1.0f, hidden + row * d,
                                              weight, 0.0f, st.logits.data(),
                                              kernels::GemmMath::kFloat32));
    MAXIMUS_RETURN_IF_ERROR(cuda::TargetLogSoftmaxCuda(
        st.logits.data(), rows, vocab, batch.targets + row, st.token_loss.data() + row, st.s()));
  }
  std::vector<float> logprobs(n);
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(logprobs.data(), st.token_loss.data(),
                                               n * sizeof(float), cudaMemcpyDeviceToHost, st.s()));
  MAXIMUS_RETURN_IF_ERROR(Synchronize());
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(logprobs[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat("no log-probability at position ", i, ": its target is outside the "
                       "vocabulary of ", vocab, " or the hidden states are not finite"));
    }
  }
  return logprobs;
}

absl::Status CudaBackend::Logits(int64_t rows, int64_t d, int64_t vocab, const float* hidden,
                                 const float* weight, float* host) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  State& st = *state_;
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.logits, rows * vocab));
  kernels::GemmDims dims;
  dims.m = rows;
  dims.n = vocab;
  dims.k = d;
  dims.transpose_b = true;
  // Full fp32: sampling reads these logits directly.
  MAXIMUS_RETURN_IF_ERROR(kernels::GemmCuda(st.cublas->get(), dims, kernels::DType::kFloat32,
                                            kernels::DType::kFloat32, 1.0f, hidden, weight, 0.0f,
                                            st.logits.data(), kernels::GemmMath::kFloat32));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(host, st.logits.data(), rows * vocab * sizeof(float),
                                               cudaMemcpyDeviceToHost, st.s()));
  return Synchronize();
}

absl::StatusOr<double> CudaBackend::OptimizerUpdate(const OptimizerStep& step,
                                                    ParameterArena& arena) {
  MAXIMUS_RETURN_IF_ERROR(TakeError());
  State& st = *state_;
  const int64_t n = arena.size();
  MAXIMUS_ASSIGN_OR_RETURN(const UpdateRange range, UpdateRangeOf(step, arena));
  // The runs of equal weight decay within the range, as offsets from its start.
  std::vector<int64_t> starts;
  std::vector<uint8_t> decays;
  for (const ParameterArena::Segment& s : arena.segments()) {
    if (s.offset + s.size <= range.begin || s.offset >= range.end) continue;
    if (decays.empty() || decays.back() != static_cast<uint8_t>(s.decay)) {
      starts.push_back(std::max(s.offset, range.begin) - range.begin);
      decays.push_back(static_cast<uint8_t>(s.decay));
    }
  }
  const bool any_update = !starts.empty();
  // The runs of this arena's segments, uploaded when they differ from the
  // last arena's (compared by value: a new arena may reuse an old address).
  if (any_update && (starts != st.host_run_starts || decays != st.host_run_decays)) {
    MAXIMUS_RETURN_IF_ERROR(Reserve(st.run_starts, static_cast<int64_t>(starts.size())));
    MAXIMUS_RETURN_IF_ERROR(Reserve(st.run_decays, static_cast<int64_t>(decays.size())));
    // On the backend's stream, so that the update below reads them.
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.run_starts.data(), starts.data(),
                                                 starts.size() * sizeof(int64_t),
                                                 cudaMemcpyHostToDevice, st.s()));
    MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(st.run_decays.data(), decays.data(),
                                                 decays.size(), cudaMemcpyHostToDevice, st.s()));
    st.host_run_starts = std::move(starts);
    st.host_run_decays = std::move(decays);
  }
  const int64_t runs = static_cast<int64_t>(st.host_run_starts.size());
  MAXIMUS_RETURN_IF_ERROR(Reserve(st.norm_partials, std::max<int64_t>(1, cuda::GradientNormBlocks(n))));
  MAXIMUS_RETURN_IF_ERROR(cuda::ScaleAndSumSquaresCuda(arena.grads().data(), n, step.grad_scale,
                                                       st.norm_partials.data(), st.norm_sum.data(),
                                                       st.s()));
  double sum_of_squares = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(&sum_of_squares, st.norm_sum.data(), sizeof(double),
                                               cudaMemcpyDeviceToHost, st.s()));
  MAXIMUS_RETURN_IF_ERROR(Synchronize());
  const double norm = std::sqrt(sum_of_squares);
  if (!std::isfinite(norm)) return norm;
  const float clip = step.clip_norm > 0 && norm > step.clip_norm
                         ? static_cast<float>(step.clip_norm / (norm + 1e-6))
                         : 1.0f;
  // The scalars as optim/adamw.cc forms them.
  const AdamWConfig& c = step.adamw;
  const double t = static_cast<double>(step.step);
  const double bias_correction1 = 1.0 - std::pow(static_cast<double>(c.beta1), t);
  const double bias_correction2 = 1.0 - std::pow(static_cast<double>(c.beta2), t);
  cuda::AdamWScalars scalars;
  scalars.beta1 = c.beta1;
  scalars.beta2 = c.beta2;
  scalars.one_minus_beta1 = static_cast<float>(1.0 - c.beta1);
  scalars.one_minus_beta2 = static_cast<float>(1.0 - c.beta2);
  scalars.eps = c.eps;
  scalars.decay = static_cast<float>(1.0 - static_cast<double>(step.lr) * c.weight_decay);
  scalars.step_size = static_cast<float>(step.lr / bias_correction1);
  scalars.bias_correction2_sqrt = static_cast<float>(std::sqrt(bias_correction2));
  if (!any_update) return norm;  // Nothing of this arena in the range.
  const int64_t moment_offset = range.begin - arena.moment_begin();
  MAXIMUS_RETURN_IF_ERROR(cuda::AdamWCuda(
      scalars, clip, range.end - range.begin, st.run_starts.data(), st.run_decays.data(), runs,
      arena.values().data() + range.begin, arena.grads().data() + range.begin,
      arena.m().data() + moment_offset, arena.v().data() + moment_offset, st.s()));
  return norm;
}

}  // namespace maximus::trainer
