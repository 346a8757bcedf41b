// The GPU backend: one CUDA stream, cuBLAS GEMMs on the tensor cores (tf32
// from fp32 activations), flash-style attention (kernels/flash_attention_cuda.h,
// no T x T buffer), the MAXIS and exact-CE kernels of kernels/ on bf16 copies
// of the hidden states and the tied embedding, and a fused clip + AdamW
// pass. Held to the CPU reference by the conformance suite
// (cuda_conformance_test.cc).
//
// Ops are asynchronous. Those that return void record the first failure,
// which Synchronize() (and the next op that returns a status) reports.
// Results are deterministic: no floating-point atomics, so the same step gives
// the same bits on every run.

#ifndef MAXIMUS_TRAINER_BACKEND_CUDA_CUDA_BACKEND_H_
#define MAXIMUS_TRAINER_BACKEND_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "kernels/bf16.h"
#include "trainer/backend/backend.h"

namespace maximus::trainer {

class CudaBackend : public Backend {
 public:
  // How a GEMM of fp32 matrices runs:
  //   kBf16: both inputs rounded to bf16 copies (a memory-bound pass each),
  //     then bf16 tensor cores with fp32 accumulation and an fp32 result;
  //     about 3e-3 relative. cuBLAS's own FAST_16BF mode on fp32 data runs
  //     no faster than TF32 on sm_90, hence the copies.
  //   kTf32: cuBLAS rounds the inputs to tf32; about 1e-3, half the speed.
  //   kFp32: full fp32 multiply-adds.
  enum class GemmPrecision { kBf16, kTf32, kFp32 };
  // "bf16", "tf32" or "fp32"; INVALID_ARGUMENT otherwise.
  static absl::StatusOr<GemmPrecision> ParseGemmPrecision(absl::string_view name);
  static const char* GemmPrecisionName(GemmPrecision precision);

  struct Options {
    // The layers' GEMMs (fp32 data in and out; see GemmPrecision).
    GemmPrecision gemm_precision = GemmPrecision::kBf16;
    // Attention on bf16 tensor cores (Q, K, V and dO rounded to bf16, fp32
    // softmax and accumulation; about 3e-3 relative); false keeps the tf32
    // kernels. Shapes the bf16 kernels do not take use tf32 either way.
    bool bf16_attention = true;
    // Rows of logits the exact cross-entropy holds at once.
    int64_t cross_entropy_chunk_tokens = 2048;
    // The CUDA device (of those CUDA_VISIBLE_DEVICES leaves) the backend
    // allocates and runs on. Create() makes it the calling thread's current
    // device; call the backend from threads whose current device it is (one
    // thread or process per device in a data-parallel run).
    int device = 0;
  };

  // UNAVAILABLE with the reason when no usable GPU is present;
  // INVALID_ARGUMENT naming the number of devices when options.device is
  // not one of them.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const Options& options);
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create() { return Create(Options()); }
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  // The device's memory.
  uint64_t MemoryBytes() const override;
  // A description of the device, for logs.
  const std::string& device_description() const;
  // Device memory in use by this process and the peak since the last reset
  // (as cudaMemGetInfo sees it: total minus free).
  int64_t DeviceBytesInUse() const;

  std::unique_ptr<Buffer> Allocate(int64_t n, DType dtype = DType::kF32) override;
  void CopyToHost(const float* src, int64_t n, float* host) override;
  void CopyFromHost(const float* host, int64_t n, float* dst) override;
  void Fill(float* x, int64_t n, float value) override;
  void Copy(const float* src, int64_t n, float* dst) override;
  void FillNormal(float* x, int64_t n, uint64_t seed, float stddev) override;
  absl::StatusOr<DeviceBatch> UploadBatch(const TokenBatch& batch) override;
  absl::Status Synchronize() override;
  void* NativeStream() override;

  absl::Status Gemm(const kernels::GemmDims& dims, float alpha, const float* a, const float* b,
                    float beta, float* c) override;

  void Embed(const int32_t* ids, int64_t n, const float* table, int64_t d, float scale,
             float* out) override;
  void EmbedBackward(const int32_t* ids, int64_t n, const float* dout, int64_t d, float scale,
                     float* dtable) override;

  void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t d, float eps, float* out,
               float* rstd) override;
  void RmsNormBackward(const float* x, const float* weight, const float* rstd, const float* dout,
                       int64_t rows, int64_t d, float* dx, float* dweight) override;

  void Rope(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
            int64_t position_offset, float theta, bool inverse) override;

  std::unique_ptr<AttentionState> NewAttentionState(const AttentionShape& shape) override;
  absl::Status CausalAttention(const AttentionShape& shape, const float* q, const float* k,
                               const float* v, float* out, AttentionState* state) override;
  absl::Status CausalAttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                                       const float* v, const float* out,
                                       const AttentionState& state, const float* dout, float* dq,
                                       float* dk, float* dv) override;

  bool SupportsRandnlaAttention() const override { return true; }
  absl::Status ImportanceScores(const kernels::ImportanceScorerWeights<float>& weights,
                                int64_t rows, const float* x, float* scores) override;
  absl::Status ImportanceScoresBackward(
      const kernels::ImportanceScorerWeights<float>& weights, int64_t rows, const float* x,
      const float* dscores, float* dx, const kernels::ImportanceScorerGrads<float>& grads) override;
  std::unique_ptr<AttentionState> NewRandnlaAttentionState(const RandnlaShape& shape) override;
  absl::Status RandnlaAttention(const RandnlaShape& shape, const float* q, const float* k,
                                const float* v, const float* scores,
                                const kernels::SketchFactors<float>& sketch, float* out,
                                AttentionState* state) override;
  absl::Status RandnlaAttentionBackward(const RandnlaShape& shape, const float* q, const float* k,
                                        const float* v, const float* scores,
                                        const kernels::SketchFactors<float>& sketch,
                                        const float* out, const AttentionState& state,
                                        const float* dout, float* dq, float* dk, float* dv,
                                        float* dscores,
                                        const kernels::SketchFactorGrads<float>& grads) override;

  void GatedActivation(kernels::Activation activation, const float* gate, const float* up,
                       int64_t n, float* out) override;
  void GatedActivationBackward(kernels::Activation activation, const float* gate, const float* up,
                               const float* dout, int64_t n, float* dgate, float* dup) override;

  void Add(const float* a, const float* b, int64_t n, float* out) override;

  absl::StatusOr<LossOutput> Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                  const float* hidden, const float* weight,
                                  const DeviceBatch& batch, const kernels::MaxisConfig& maxis,
                                  bool gradients, float* grad_hidden, float* grad_weight) override;
  absl::StatusOr<std::vector<float>> TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                   const float* hidden, const float* weight,
                                                   const DeviceBatch& batch) override;
  absl::Status Logits(int64_t rows, int64_t d, int64_t vocab, const float* hidden,
                      const float* weight, float* host) override;

  absl::StatusOr<double> OptimizerUpdate(const OptimizerStep& step, ParameterArena& arena) override;

 private:
  struct State;
  explicit CudaBackend(std::unique_ptr<State> state);

  // Keeps the first failure for Synchronize().
  void Record(absl::Status status);
  absl::Status TakeError();

  // Attention's bf16 copies of its inputs (null where not asked for).
  struct AttentionInputsBf16 {
    const kernels::Bf16Bits* q = nullptr;
    const kernels::Bf16Bits* k = nullptr;
    const kernels::Bf16Bits* v = nullptr;
    const kernels::Bf16Bits* dout = nullptr;
  };
  bool UseBf16Attention(const AttentionShape& shape) const;
  // Rounds q, k, v (and dout when not null) into the backend's scratch,
  // valid until the next call.
  absl::StatusOr<AttentionInputsBf16> RoundAttentionInputs(const AttentionShape& shape,
                                                           const float* q, const float* k,
                                                           const float* v, const float* dout);

  std::unique_ptr<State> state_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_CUDA_CUDA_BACKEND_H_
