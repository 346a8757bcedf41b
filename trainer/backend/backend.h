// The operations the model is made of, on memory the backend owns. The model
// code calls only these, so a CUDA backend plugs in without touching it; the
// CPU backend (cpu_backend.h) is the reference every other backend is
// checked against.
//
// Conventions: fp32 values, row-major matrices, "rows x d" activations.
// Linear weights are stored as PyTorch's nn.Linear does, [out, in]. Ops that
// produce gradients of parameters accumulate (+=) into them, so that
// micro-batches add up; gradients of activations are overwritten unless the
// comment says otherwise. Token ids, targets and masks are host arrays.

#ifndef MAXIMUS_TRAINER_BACKEND_BACKEND_H_
#define MAXIMUS_TRAINER_BACKEND_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/cross_entropy.h"
#include "kernels/gemm.h"
#include "kernels/maxis.h"
#include "trainer/optim/adamw.h"

namespace maximus::trainer {

// n floats of backend memory, zero-filled on allocation.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual float* data() = 0;
  virtual const float* data() const = 0;
  virtual int64_t size() const = 0;
};

// Causal attention of `batch` sequences. Query i of a sequence sits at
// position query_offset + i and sees keys 0 .. query_offset + i; keys number
// query_offset + queries (query_offset > 0 when decoding with a KV cache).
// Head h of the queries reads key/value head h / (heads / kv_heads).
// q: [batch, queries, heads, head_dim]; k, v: [batch, keys, kv_heads,
// head_dim] (keys row stride key_stride rows, for a cache longer than used);
// out: like q.
struct AttentionShape {
  int64_t batch = 0;
  int64_t queries = 0;
  int64_t query_offset = 0;
  int64_t key_stride = 0;  // Rows per sequence in k and v; 0: query_offset + queries.
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  float scale = 1.0f;  // Multiplies q·k.

  int64_t keys() const { return query_offset + queries; }
  int64_t KeyStride() const { return key_stride != 0 ? key_stride : keys(); }
};

enum class LossKind { kMaxis, kCrossEntropy };

struct LossOutput {
  double loss = 0;       // The optimised loss (MAXIS: main + alpha * aux).
  double main_loss = 0;  // MAXIS: the main term; CE: the loss.
  int64_t counted_tokens = 0;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  virtual std::unique_ptr<Buffer> Allocate(int64_t n) = 0;
  virtual void CopyToHost(const float* src, int64_t n, float* host) = 0;
  virtual void CopyFromHost(const float* host, int64_t n, float* dst) = 0;
  virtual void Fill(float* x, int64_t n, float value) = 0;
  // dst = src, both backend memory.
  virtual void Copy(const float* src, int64_t n, float* dst) = 0;
  // x[i] = stddev * NormalAt(seed, i) (kernels/random.h): the same values on
  // every backend.
  virtual void FillNormal(float* x, int64_t n, uint64_t seed, float stddev) = 0;

  // C = alpha * op(A) op(B) + beta * C.
  virtual absl::Status Gemm(const kernels::GemmDims& dims, float alpha, const float* a,
                            const float* b, float beta, float* c) = 0;

  // out[i, :] = scale * table[ids[i], :].
  virtual void Embed(absl::Span<const int32_t> ids, const float* table, int64_t d, float scale,
                     float* out) = 0;
  // dtable[ids[i], :] += scale * dout[i, :].
  virtual void EmbedBackward(absl::Span<const int32_t> ids, const float* dout, int64_t d,
                             float scale, float* dtable) = 0;

  // Gemma's RMSNorm: out = x / rms(x) * (1 + weight), rms = sqrt(mean(x²) +
  // eps); rstd[r] = 1 / rms of row r (kept for the backward).
  virtual void RmsNorm(const float* x, const float* weight, int64_t rows, int64_t d, float eps,
                       float* out, float* rstd) = 0;
  // dx = (overwritten); dweight += .
  virtual void RmsNormBackward(const float* x, const float* weight, const float* rstd,
                               const float* dout, int64_t rows, int64_t d, float* dx,
                               float* dweight) = 0;

  // Rotary embedding in place on [batch, seq, heads, head_dim] (rotate-half
  // pairing: dimension i with i + head_dim/2), positions position_offset + t.
  // `inverse` rotates back (the backward of the forward rotation).
  virtual void Rope(float* x, int64_t batch, int64_t seq, int64_t heads, int64_t head_dim,
                    int64_t position_offset, float theta, bool inverse) = 0;

  // probs: [batch, heads, queries, keys()] softmax weights, kept for the
  // backward (may be null when no backward follows).
  virtual void CausalAttention(const AttentionShape& shape, const float* q, const float* k,
                               const float* v, float* out, float* probs) = 0;
  // dq overwritten; dk, dv overwritten (with query_offset 0).
  virtual void CausalAttentionBackward(const AttentionShape& shape, const float* q, const float* k,
                                       const float* v, const float* probs, const float* dout,
                                       float* dq, float* dk, float* dv) = 0;

  // out = silu(gate) * up.
  virtual void SwiGlu(const float* gate, const float* up, int64_t n, float* out) = 0;
  virtual void SwiGluBackward(const float* gate, const float* up, const float* dout, int64_t n,
                              float* dgate, float* dup) = 0;

  // out = a + b (out may alias a or b).
  virtual void Add(const float* a, const float* b, int64_t n, float* out) = 0;

  // The loss of hidden [N, d] against the tied embedding weight [V, d].
  // With gradients: grad_hidden [N, d] overwritten, grad_weight [V, d] +=.
  virtual absl::StatusOr<LossOutput> Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                          const float* hidden, const float* weight,
                                          absl::Span<const int32_t> targets,
                                          absl::Span<const uint8_t> loss_mask,
                                          const kernels::MaxisConfig& maxis, bool gradients,
                                          float* grad_hidden, float* grad_weight) = 0;
  // Exact log p(target | ·) of each row (0 where masked).
  virtual absl::StatusOr<std::vector<float>> TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                           const float* hidden, const float* weight,
                                                           absl::Span<const int32_t> targets) = 0;
  // logits [rows, V] = hidden [rows, d] · weightᵀ, copied to the host.
  virtual absl::StatusOr<std::vector<float>> Logits(int64_t rows, int64_t d, int64_t vocab,
                                                    const float* hidden, const float* weight) = 0;

  // Σ x² in double.
  virtual double SquaredNorm(const float* x, int64_t n) = 0;
  virtual void Scale(float* x, int64_t n, float factor) = 0;
  virtual void AdamW(const AdamWConfig& config, int64_t step, float lr, float weight_decay_scale,
                     int64_t n, float* param, const float* grad, float* m, float* v) = 0;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_BACKEND_H_
