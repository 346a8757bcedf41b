// The reference backend: fp32 on the CPU, GEMMs through OpenBLAS, row loops
// over the shared thread pool, losses from kernels/ (maxis.h,
// cross_entropy.h). Deterministic: results do not depend on scheduling.

#ifndef MAXIMUS_TRAINER_BACKEND_CPU_CPU_BACKEND_H_
#define MAXIMUS_TRAINER_BACKEND_CPU_CPU_BACKEND_H_

#include <memory>
#include <string>
#include <vector>

#include "trainer/backend/backend.h"

namespace maximus::trainer {

class CpuBackend : public Backend {
 public:
  std::string name() const override { return "cpu"; }

  std::unique_ptr<Buffer> Allocate(int64_t n, DType dtype = DType::kF32) override;
  void CopyToHost(const float* src, int64_t n, float* host) override;
  void CopyFromHost(const float* host, int64_t n, float* dst) override;
  void Fill(float* x, int64_t n, float value) override;
  void Copy(const float* src, int64_t n, float* dst) override;
  void FillNormal(float* x, int64_t n, uint64_t seed, float stddev) override;
  absl::StatusOr<DeviceBatch> UploadBatch(const TokenBatch& batch) override;
  absl::Status Synchronize() override { return absl::OkStatus(); }

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
  // The uploaded batch.
  std::vector<int32_t> inputs_, targets_;
  std::vector<uint8_t> loss_mask_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_CPU_CPU_BACKEND_H_
