// The reference backend: fp32 on the CPU, GEMMs through OpenBLAS, row loops
// over the shared thread pool, losses from kernels/ (maxis.h,
// cross_entropy.h). Deterministic for a given thread count.

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

  std::unique_ptr<Buffer> Allocate(int64_t n) override;
  void CopyToHost(const float* src, int64_t n, float* host) override;
  void CopyFromHost(const float* host, int64_t n, float* dst) override;
  void Fill(float* x, int64_t n, float value) override;
  void Copy(const float* src, int64_t n, float* dst) override;
  void FillNormal(float* x, int64_t n, uint64_t seed, float stddev) override;

  absl::Status Gemm(const kernels::GemmDims& dims, float alpha, const float* a, const float* b,
                    float beta, float* c) override;

  void Embed(absl::Span<const int32_t> ids, const float* table, int64_t d, float scale,
             float* out) override;
  void EmbedBackward(absl::Span<const int32_t> ids, const float* dout, int64_t d, float scale,
                     float* dtable) override;

  void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t d, float eps, float* out,
               float* rstd) override;
  void RmsNormBackward(const float* x, const float* weight, const float* rstd, const float* dout,
                       int64_t rows, int64_t d, float* dx, float* dweight) override;

  void Rope(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
            int64_t position_offset, float theta, bool inverse) override;

  void CausalAttention(const AttentionShape& shape, const float* q, const float* k, const float* v,
                       float* out, float* probs) override;
  void CausalAttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                               const float* v, const float* probs, const float* dout, float* dq,
                               float* dk, float* dv) override;

  void SwiGlu(const float* gate, const float* up, int64_t n, float* out) override;
  void SwiGluBackward(const float* gate, const float* up, const float* dout, int64_t n,
                      float* dgate, float* dup) override;

  void Add(const float* a, const float* b, int64_t n, float* out) override;

  absl::StatusOr<LossOutput> Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                  const float* hidden, const float* weight,
                                  absl::Span<const int32_t> targets,
                                  absl::Span<const uint8_t> loss_mask,
                                  const kernels::MaxisConfig& maxis, bool gradients,
                                  float* grad_hidden, float* grad_weight) override;
  absl::StatusOr<std::vector<float>> TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                   const float* hidden, const float* weight,
                                                   absl::Span<const int32_t> targets) override;
  absl::StatusOr<std::vector<float>> Logits(int64_t rows, int64_t d, int64_t vocab,
                                            const float* hidden, const float* weight) override;

  double SquaredNorm(const float* x, int64_t n) override;
  void Scale(float* x, int64_t n, float factor) override;
  void AdamW(const AdamWConfig& config, int64_t step, float lr, float weight_decay_scale, int64_t n,
             float* param, const float* grad, float* m, float* v) override;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_CPU_CPU_BACKEND_H_
