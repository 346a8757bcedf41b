// The operations the model is made of, on memory the backend owns. The model
// code calls only these, so a CUDA backend plugs in without touching it; the
// CPU backend (cpu/cpu_backend.h) is the reference every other backend is
// held to by the conformance suite (conformance_test.cc).
//
// Conventions:
// - Buffers carry a dtype. Activations and gradients the ops read and write
//   are fp32 here (`Buffer::data()`); a backend may keep bf16 copies of its
//   own (the parameter arena's shadow) for its GEMMs.
// - Row-major matrices, "rows x d" activations; linear weights [out, in] as
//   PyTorch's nn.Linear.
// - Ops that produce gradients of parameters accumulate (+=) into them, so
//   that micro-batches add up; gradients of activations are overwritten
//   unless the comment says otherwise.
// - The token ids, targets and loss mask of a micro-batch are uploaded once
//   (UploadBatch) and read by the ops from backend memory.
// - Ops may run asynchronously: an op that can fail returns absl::Status,
//   and Synchronize() reports what failed since the last call. No error is
//   dropped.

#ifndef MAXIMUS_TRAINER_BACKEND_BACKEND_H_
#define MAXIMUS_TRAINER_BACKEND_BACKEND_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/attention_shape.h"
#include "kernels/cross_entropy.h"
#include "kernels/gated_activation.h"
#include "kernels/gemm.h"
#include "kernels/importance_scorer.h"
#include "kernels/maxis.h"
#include "kernels/randnla_attention.h"
#include "trainer/optim/adamw.h"

namespace maximus::trainer {

enum class DType { kF32, kBF16, kI32 };

int64_t DTypeBytes(DType dtype);
const char* DTypeName(DType dtype);

// n elements of backend memory, zero-filled on allocation.
class Buffer {
 public:
  virtual ~Buffer() = default;
  virtual DType dtype() const = 0;
  virtual int64_t size() const = 0;
  virtual void* raw() = 0;
  virtual const void* raw() const = 0;
  int64_t bytes() const { return size() * DTypeBytes(dtype()); }
  // The elements of an fp32 buffer (aborts on another dtype: a programming
  // error, never a data error).
  float* data();
  const float* data() const;
};

// A window onto memory owned elsewhere (the parameter arena): valid while the
// owner lives. Works for any backend whose memory is addressed by pointers.
class BufferView : public Buffer {
 public:
  BufferView(void* data, int64_t size, DType dtype) : data_(data), size_(size), dtype_(dtype) {}
  DType dtype() const override { return dtype_; }
  int64_t size() const override { return size_; }
  void* raw() override { return data_; }
  const void* raw() const override { return data_; }

 private:
  void* data_;
  int64_t size_;
  DType dtype_;
};

// One micro-batch on the host: `rows` sequences of `seq` positions; targets
// are the next tokens; loss_mask (empty: all ones) selects the counted
// targets.
struct TokenBatch {
  int64_t rows = 0;
  int64_t seq = 0;
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  std::vector<uint8_t> loss_mask;
};

// A TokenBatch in backend memory (UploadBatch), valid until the next upload.
struct DeviceBatch {
  int64_t rows = 0;
  int64_t seq = 0;
  const int32_t* inputs = nullptr;
  const int32_t* targets = nullptr;
  const uint8_t* loss_mask = nullptr;  // null: every target counts
  int64_t tokens() const { return rows * seq; }
};

using kernels::AttentionShape;
using kernels::RandnlaShape;

// What an attention forward keeps for its backward, sized and owned by the
// backend: the log-sum-exp of each query row, from which the backward
// recomputes the probabilities (and for RandNLA attention each block's detail
// positions and sketch, kernels/randnla_attention.h's RandnlaSaved).
class AttentionState {
 public:
  virtual ~AttentionState() = default;
};

// Every parameter of a model in one allocation each for values, gradients and
// the AdamW moments (and a bf16 shadow of the values where the backend wants
// one), so that zeroing, clipping and the optimizer are single passes.
class ParameterArena {
 public:
  struct Segment {
    std::string name;
    std::vector<int64_t> shape;
    bool decay = true;  // Weight decay applies (matrices and the embedding).
    int64_t offset = 0;
    int64_t size = 0;
  };

  // Segments are laid out in order; offsets are filled in. The moments m and
  // v cover elements [moment_begin, moment_begin + m->size()) of the arena:
  // all of it, or one rank's shard when the optimizer state is sharded.
  ParameterArena(std::vector<Segment> segments, std::unique_ptr<Buffer> values,
                 std::unique_ptr<Buffer> grads, std::unique_ptr<Buffer> m,
                 std::unique_ptr<Buffer> v, std::unique_ptr<Buffer> shadow,
                 int64_t moment_begin = 0);

  int64_t size() const { return values_->size(); }
  const std::vector<Segment>& segments() const { return segments_; }
  Buffer& values() { return *values_; }
  Buffer& grads() { return *grads_; }
  Buffer& m() { return *m_; }
  Buffer& v() { return *v_; }
  Buffer* shadow() { return shadow_.get(); }  // bf16, or null
  // The elements the moments cover: [moment_begin(), moment_end()).
  int64_t moment_begin() const { return moment_begin_; }
  int64_t moment_end() const { return moment_begin_ + m_->size(); }

 private:
  std::vector<Segment> segments_;
  std::unique_ptr<Buffer> values_, grads_, m_, v_, shadow_;
  int64_t moment_begin_ = 0;
};

// One view per segment of `arena` into `base`, memory laid out as the
// arena's values (its values, gradients, unsharded moments, or a full copy of
// sharded ones); valid while that memory lives.
std::vector<std::unique_ptr<Buffer>> SegmentViews(const ParameterArena& arena, float* base);

// One optimizer step over the whole arena: gradients *= grad_scale (1 /
// accumulation), the global L2 norm measured (float64), clipped to clip_norm
// when clip_norm > 0 (clip_grad_norm_'s rule), then AdamW (optim/adamw.h)
// with weight_decay applied to the segments that take it, and the bf16
// shadow refreshed. The norm covers the whole arena; the update only the
// elements [update_begin, update_end) (-1: the end), which the arena's
// moments must cover (a rank's shard of a sharded optimizer).
struct OptimizerStep {
  AdamWConfig adamw;
  int64_t step = 1;  // 1-based.
  float lr = 0;
  float grad_scale = 1.0f;
  double clip_norm = 0;
  int64_t update_begin = 0;
  int64_t update_end = -1;
};

// The elements an OptimizerStep updates: [begin, end).
struct UpdateRange {
  int64_t begin = 0;
  int64_t end = 0;
};
// INVALID_ARGUMENT when the step's range leaves the arena or its moments.
absl::StatusOr<UpdateRange> UpdateRangeOf(const OptimizerStep& step, const ParameterArena& arena);
// Shard `index` of `shards` contiguous shards of `total` elements: equal
// lengths, multiples of 64 elements (aligned for vector loads), the last
// shorter (or empty).
UpdateRange ShardOf(int64_t total, int shards, int index);

enum class LossKind { kMaxis, kCrossEntropy };

struct LossOutput {
  double loss = 0;       // The optimised loss (MAXIS: main + alpha * aux).
  double main_loss = 0;  // MAXIS: the main term; CE: the loss.
  int64_t counted_tokens = 0;
  // With gradients: the embedding rows the loss added gradient to (sorted,
  // unique; MAXIS's targets and candidates), or every row (exact CE's dense
  // gradient). A data-parallel run reduces only those rows.
  bool embedding_grad_dense = false;
  std::vector<int32_t> embedding_grad_rows;
};

class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::string name() const = 0;

  // --- Memory -----------------------------------------------------------------
  virtual std::unique_ptr<Buffer> Allocate(int64_t n, DType dtype = DType::kF32) = 0;
  // An arena for `segments` (offsets and sizes are filled in here), with
  // moments for shard `moment_shard` of `moment_shards` of its elements
  // (ShardOf; all of them by default).
  absl::StatusOr<std::unique_ptr<ParameterArena>> AllocateArena(
      std::vector<ParameterArena::Segment> segments, int moment_shards = 1, int moment_shard = 0);
  // The bytes of the memory this backend allocates from (the host's physical
  // memory for the CPU, the device's for a GPU), for up-front size checks.
  virtual uint64_t MemoryBytes() const;
  // Whether the arena keeps a bf16 shadow of the values for this backend's
  // GEMMs.
  virtual bool WantsBf16Shadow() const { return false; }
  virtual void CopyToHost(const float* src, int64_t n, float* host) = 0;
  virtual void CopyFromHost(const float* host, int64_t n, float* dst) = 0;
  // n int32 ids into `dst` (a kI32 buffer of at least n elements): a byte
  // copy, as CopyFromHost is on every backend.
  void CopyIdsFromHost(const int32_t* host, int64_t n, Buffer* dst);
  virtual void Fill(float* x, int64_t n, float value) = 0;
  // dst = src, both backend memory.
  virtual void Copy(const float* src, int64_t n, float* dst) = 0;
  // x[i] = stddev * NormalAt(seed, i) (kernels/random.h): the same values on
  // every backend.
  virtual void FillNormal(float* x, int64_t n, uint64_t seed, float stddev) = 0;
  // Copies the batch's ids, targets and mask into backend memory.
  virtual absl::StatusOr<DeviceBatch> UploadBatch(const TokenBatch& batch) = 0;
  // Waits for the ops issued so far and reports the first error among them.
  virtual absl::Status Synchronize() = 0;
  // The cudaStream_t the backend issues its ops on, for work of its own that
  // must be ordered with them (NCCL collectives); null for the CPU.
  virtual void* NativeStream() { return nullptr; }

  // --- Ops --------------------------------------------------------------------
  // C = alpha * op(A) op(B) + beta * C.
  virtual absl::Status Gemm(const kernels::GemmDims& dims, float alpha, const float* a,
                            const float* b, float beta, float* c) = 0;

  // out[i, :] = scale * table[ids[i], :] for i < n.
  virtual void Embed(const int32_t* ids, int64_t n, const float* table, int64_t d, float scale,
                     float* out) = 0;
  // dtable[ids[i], :] += scale * dout[i, :].
  virtual void EmbedBackward(const int32_t* ids, int64_t n, const float* dout, int64_t d,
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

  // The state an attention forward of `shape` keeps for its backward.
  virtual std::unique_ptr<AttentionState> NewAttentionState(const AttentionShape& shape) = 0;
  // `state` (from NewAttentionState for this shape) receives what the
  // backward needs; null when no backward follows (decoding).
  virtual absl::Status CausalAttention(const AttentionShape& shape, const float* q, const float* k,
                                       const float* v, float* out, AttentionState* state) = 0;
  // dq overwritten; dk, dv overwritten (with query_offset 0). `out` is the
  // forward's output.
  virtual absl::Status CausalAttentionBackward(const AttentionShape& shape, const float* q,
                                               const float* k, const float* v, const float* out,
                                               const AttentionState& state, const float* dout,
                                               float* dq, float* dk, float* dv) = 0;

  // RandNLA attention (kernels/randnla_attention.h, the construction in
  // kernels/randnla_attention.md) and its importance scorer
  // (kernels/importance_scorer.h), with the CPU reference's layouts. A backend
  // without them says so here and answers UNIMPLEMENTED from each.
  virtual bool SupportsRandnlaAttention() const = 0;
  // scores [rows] of x [rows, d].
  virtual absl::Status ImportanceScores(const kernels::ImportanceScorerWeights<float>& weights,
                                        int64_t rows, const float* x, float* scores) = 0;
  // dx += the gradient through the scorer; the weights' gradients +=.
  virtual absl::Status ImportanceScoresBackward(
      const kernels::ImportanceScorerWeights<float>& weights, int64_t rows, const float* x,
      const float* dscores, float* dx, const kernels::ImportanceScorerGrads<float>& grads) = 0;
  virtual std::unique_ptr<AttentionState> NewRandnlaAttentionState(const RandnlaShape& shape) = 0;
  // scores [batch, KeyStride()] of the keys' positions; `state` as for
  // CausalAttention (null when no backward follows).
  virtual absl::Status RandnlaAttention(const RandnlaShape& shape, const float* q, const float* k,
                                        const float* v, const float* scores,
                                        const kernels::SketchFactors<float>& sketch, float* out,
                                        AttentionState* state) = 0;
  // dq, dk, dv, dscores overwritten (query_offset 0); the sketch gradients +=.
  virtual absl::Status RandnlaAttentionBackward(const RandnlaShape& shape, const float* q,
                                                const float* k, const float* v, const float* scores,
                                                const kernels::SketchFactors<float>& sketch,
                                                const float* out, const AttentionState& state,
                                                const float* dout, float* dq, float* dk, float* dv,
                                                float* dscores,
                                                const kernels::SketchFactorGrads<float>& grads) = 0;

  // out = act(gate) * up (kernels/gated_activation.h).
  virtual void GatedActivation(kernels::Activation activation, const float* gate, const float* up,
                               int64_t n, float* out) = 0;
  virtual void GatedActivationBackward(kernels::Activation activation, const float* gate,
                                       const float* up, const float* dout, int64_t n, float* dgate,
                                       float* dup) = 0;

  // out = a + b (out may alias a or b).
  virtual void Add(const float* a, const float* b, int64_t n, float* out) = 0;

  // The loss of hidden [N, d] against the tied embedding weight [V, d] for
  // the targets and mask of `batch`. With gradients: grad_hidden [N, d]
  // overwritten, and the embedding's gradient added into grad_weight [V, d]
  // (the arena's gradient of the embedding): MAXIS adds its sparse rows,
  // exact CE its dense gradient.
  virtual absl::StatusOr<LossOutput> Loss(LossKind kind, const kernels::LinearHeadShape& shape,
                                          const float* hidden, const float* weight,
                                          const DeviceBatch& batch,
                                          const kernels::MaxisConfig& maxis, bool gradients,
                                          float* grad_hidden, float* grad_weight) = 0;
  // Exact log p(target | ·) of each row of `batch` (masked rows too), to the
  // host.
  virtual absl::StatusOr<std::vector<float>> TokenLogProbs(const kernels::LinearHeadShape& shape,
                                                           const float* hidden, const float* weight,
                                                           const DeviceBatch& batch) = 0;
  // logits [rows, V] = hidden [rows, d] · weightᵀ, copied into `host`
  // (rows * V floats).
  virtual absl::Status Logits(int64_t rows, int64_t d, int64_t vocab, const float* hidden,
                              const float* weight, float* host) = 0;

  // The fused clip + AdamW pass over the arena; returns the gradient norm
  // after grad_scale, before clipping. A non-finite norm updates nothing.
  virtual absl::StatusOr<double> OptimizerUpdate(const OptimizerStep& step,
                                                 ParameterArena& arena) = 0;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_BACKEND_H_
