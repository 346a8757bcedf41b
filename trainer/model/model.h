// The decoder of DESIGN.md, written only against Backend ops:
//   x = sqrt(d) · E[ids]
//   per layer:  x += PostAttnNorm(Attn(PreAttnNorm(x)))
//               x += PostFfNorm(Down(SiLU(Gate(n)) ⊙ Up(n))),  n = PreFfNorm(x)
//   Attn: q, k, v projections; RMSNorm of each q and k head; RoPE; causal
//         softmax(q·k / sqrt(head_dim)) v over grouped KV heads; output proj.
//   hidden = FinalNorm(x); the LM head is the embedding E (tied).
// RMSNorms scale by (1 + weight), weights start at 0 (Gemma's convention).
// Parameters carry Hugging Face Gemma 3 names and [out, in] layouts, so a
// checkpoint reads like a transformers state dict.

#ifndef MAXIMUS_TRAINER_MODEL_MODEL_H_
#define MAXIMUS_TRAINER_MODEL_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kernels/maxis.h"
#include "trainer/backend/backend.h"
#include "trainer/model/model_config.h"

namespace maximus::trainer {

struct Parameter {
  std::string name;
  std::vector<int64_t> shape;
  // Weight decay applies (matrices and the embedding, not norm weights).
  bool decay = true;
  std::unique_ptr<Buffer> value;
  std::unique_ptr<Buffer> grad;

  int64_t size() const { return value->size(); }
};

// One micro-batch: `rows` sequences of `seq` positions; targets are the next
// tokens; loss_mask (empty: all ones) selects the counted targets.
struct TokenBatch {
  int64_t rows = 0;
  int64_t seq = 0;
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  std::vector<uint8_t> loss_mask;
};

struct LossSettings {
  LossKind kind = LossKind::kMaxis;
  kernels::MaxisConfig maxis;
};

class Model {
 public:
  static absl::StatusOr<std::unique_ptr<Model>> Create(Backend* backend, const ModelConfig& config);
  ~Model();

  // Normal(0, std) matrices with per-parameter seeds derived from `seed`:
  // embedding std 1/sqrt(hidden), projections 0.02 (output projections
  // 0.02/sqrt(2·layers)); norm weights 0.
  void Initialize(uint64_t seed);

  const ModelConfig& config() const { return config_; }
  Backend* backend() const { return backend_; }
  std::vector<Parameter>& parameters() { return parameters_; }
  Parameter* Find(const std::string& name);
  // The tied embedding, [vocab, hidden].
  Parameter& embedding() { return parameters_[0]; }

  void ZeroGrads();
  // Forward pass and loss; with `backward`, parameter gradients += the
  // gradient of this batch's mean loss.
  absl::StatusOr<LossOutput> Step(const TokenBatch& batch, const LossSettings& loss, bool backward);
  // Exact log p(target) at every position (masked positions too).
  absl::StatusOr<std::vector<float>> TokenLogProbs(const TokenBatch& batch);

  // Incremental decoding of one sequence with a KV cache.
  class Decoder {
   public:
    // Feeds tokens (the prompt, then one at a time); returns the logits of
    // the last one. RESOURCE_EXHAUSTED past max_positions.
    absl::StatusOr<std::vector<float>> Feed(absl::Span<const int32_t> tokens);
    int64_t position() const { return position_; }

   private:
    friend class Model;
    Model* model_ = nullptr;
    int64_t max_positions_ = 0;
    int64_t position_ = 0;
    std::vector<std::unique_ptr<Buffer>> keys_;  // per layer [max, kv_heads * head_dim]
    std::vector<std::unique_ptr<Buffer>> values_;
  };
  std::unique_ptr<Decoder> NewDecoder(int64_t max_positions);

 private:
  struct Activations;
  Model(Backend* backend, const ModelConfig& config);
  // Runs the layers over rows x seq tokens starting at `offset`; saves what
  // the backward needs when `acts` is set; reads/writes the decoder's cache
  // when `decoder` is set. Leaves the final hidden states in acts->final or
  // `final_out`.
  absl::Status Forward(absl::Span<const int32_t> ids, int64_t rows, int64_t seq, Activations* acts,
                       Decoder* decoder, float* final_out);
  absl::Status Backward(const TokenBatch& batch, Activations* acts, const float* grad_final);
  Activations* ActivationsFor(int64_t rows, int64_t seq);

  Backend* backend_;
  ModelConfig config_;
  std::vector<Parameter> parameters_;
  std::unique_ptr<Activations> acts_;
};

// Splits packed rows of seq + 1 tokens (a data_service batch) into inputs
// and next-token targets; the mask of a target is the mask of its token.
TokenBatch MakeTokenBatch(absl::Span<const int32_t> tokens, absl::Span<const uint8_t> mask,
                          int64_t rows, int64_t row_length);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_MODEL_H_
