// The Gemma 3 text decoder, as transformers' Gemma3ForCausalLM computes it,
// written only against Backend ops:
//   x = sqrt(d) · E[ids]
//   per layer:  x += PostAttnNorm(Attn(PreAttnNorm(x)))
//               x += PostFfNorm(Down(act(Gate(n)) ⊙ Up(n))),  n = PreFfNorm(x)
//               act = GELU-tanh (Gemma 3) or SiLU (model_config.h)
//   Attn: q, k, v projections; RMSNorm of each q and k head; RoPE (base
//         rope_local_theta on sliding-window layers, rope_theta on global
//         ones); causal softmax(q·k / sqrt(query_pre_attn_scalar)) v over
//         grouped KV heads, within the sliding window on local layers;
//         output projection.
//   hidden = FinalNorm(x); the LM head is the embedding E (tied).
// Layers that config.IsRandnlaLayer() names take RandNLA attention instead of
// the causal softmax (kernels/randnla_attention.h), with their own importance
// scorer (self_attn.importance_scorer.*) reading the pre-attention norm's
// output, and sketch factors and scale (self_attn.sketch.*).
// RMSNorms scale by (1 + weight), weights start at 0 (Gemma's convention).
// Parameters carry Hugging Face Gemma 3 names and [out, in] layouts, so a
// checkpoint reads like a transformers state dict.

#ifndef MAXIMUS_TRAINER_MODEL_MODEL_H_
#define MAXIMUS_TRAINER_MODEL_MODEL_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "kernels/maxis.h"
#include "trainer/backend/backend.h"
#include "trainer/model/model_config.h"

namespace maximus::trainer {

// A parameter's value and gradient: views into the model's ParameterArena.
struct Parameter {
  std::string name;
  std::vector<int64_t> shape;
  // Weight decay applies (matrices and the embedding, not norm weights).
  bool decay = true;
  std::unique_ptr<Buffer> value;
  std::unique_ptr<Buffer> grad;

  int64_t size() const { return value->size(); }
};

struct LossSettings {
  LossKind kind = LossKind::kMaxis;
  kernels::MaxisConfig maxis;
};

class Model {
 public:
  // With optimizer_shards > 1 the arena keeps AdamW moments only for shard
  // `optimizer_shard` of its elements (ShardOf in backend.h; ZeRO stage 1).
  static absl::StatusOr<std::unique_ptr<Model>> Create(Backend* backend, const ModelConfig& config,
                                                       int optimizer_shards = 1,
                                                       int optimizer_shard = 0);
  ~Model();

  // Normal(0, std) matrices with per-parameter seeds derived from `seed`:
  // embedding std 1/sqrt(hidden), projections 0.02 (output projections
  // 0.02/sqrt(2·layers)); norm weights 0.
  void Initialize(uint64_t seed);

  const ModelConfig& config() const { return config_; }
  Backend* backend() const { return backend_; }
  std::vector<Parameter>& parameters() { return parameters_; }
  // Values, gradients and optimizer moments of every parameter.
  ParameterArena& arena() { return *arena_; }
  Parameter* Find(const std::string& name);
  // The tied embedding, [vocab, hidden].
  Parameter& embedding() { return parameters_[0]; }

  void ZeroGrads();
  // Activation checkpointing: the forward keeps only each layer's input, and
  // the backward recomputes a layer's activations before its gradients (one
  // more forward of the layers; activation memory of one layer instead of
  // all). Off by default.
  void SetActivationCheckpointing(bool on);
  bool activation_checkpointing() const { return checkpointing_; }
  // Called by the backward each time the gradients from an arena offset on
  // are final (after the final norm, then after each layer), so that their
  // reduction over ranks overlaps the rest of the backward. Empty: none.
  void SetGradientsReadyHook(std::function<absl::Status(int64_t offset)> hook) {
    gradients_ready_ = std::move(hook);
  }
  // Forward pass and loss; with `backward`, parameter gradients += the
  // gradient of this batch's mean loss.
  absl::StatusOr<LossOutput> Step(const TokenBatch& batch, const LossSettings& loss, bool backward);
  // Exact log p(target) at every position (masked positions too).
  absl::StatusOr<std::vector<float>> TokenLogProbs(const TokenBatch& batch);
  // The final hidden states (after the final norm) of every input position,
  // [rows, seq, hidden] on the host: what an embedder pools. Attention is
  // causal, so padding after a row's last token leaves its states unchanged.
  absl::StatusOr<std::vector<float>> FinalHiddenStates(const TokenBatch& batch);

 private:
  struct Activations;

 public:
  // Incremental decoding of one sequence with a KV cache. Memory is taken at
  // creation and when a feed is longer than any before, never per token.
  class Decoder {
   public:
    ~Decoder();
    // Feeds tokens (the prompt, then one at a time); writes the logits of the
    // last one into `logits` (resized to the vocabulary). RESOURCE_EXHAUSTED
    // past max_positions.
    absl::Status Feed(absl::Span<const int32_t> tokens, std::vector<float>* logits);
    int64_t position() const { return position_; }

   private:
    friend class Model;
    Model* model_ = nullptr;
    int64_t max_positions_ = 0;
    int64_t position_ = 0;
    std::vector<std::unique_ptr<Buffer>> keys_;  // per layer [max, kv_heads * head_dim]
    std::vector<std::unique_ptr<Buffer>> values_;
    std::vector<std::unique_ptr<Buffer>> scores_;  // per RandNLA layer [max]; null otherwise
    TokenBatch batch_;                             // the fed ids, for UploadBatch
    std::unique_ptr<Activations> scratch_;         // one layer's worth, for the longest feed so far
    std::unique_ptr<Buffer> final_;
  };
  std::unique_ptr<Decoder> NewDecoder(int64_t max_positions);

 private:
  Model(Backend* backend, const ModelConfig& config);
  // Runs the layers over rows x seq tokens starting at `offset`; saves what
  // the backward needs when `acts` is set; reads/writes the decoder's cache
  // when `decoder` is set. Leaves the final hidden states in acts->final or
  // `final_out`.
  absl::Status Forward(const DeviceBatch& batch, Activations* acts, Decoder* decoder,
                       float* final_out);
  absl::Status Backward(const DeviceBatch& batch, Activations* acts, const float* grad_final);
  // One layer: the residual stream x (input and output) through attention and
  // the MLP, its activations into acts (or the decoder's scratch); saves x as
  // the layer's input unless `recompute` (the backward of checkpointing,
  // which starts from that saved input).
  absl::Status LayerForward(int64_t layer, const DeviceBatch& batch, Activations* acts,
                            Decoder* decoder, float* x, bool recompute);
  // Decoding scratch for n tokens: one layer, no backward state.
  std::unique_ptr<Activations> NewScratch(int64_t n);
  // The attention of `layer` over rows x seq queries from position `offset`.
  AttentionShape AttentionShapeOf(int64_t layer, int64_t rows, int64_t seq, int64_t offset,
                                  int64_t key_stride) const;
  // INVALID_ARGUMENT naming the first id outside the vocabulary.
  absl::Status CheckIds(absl::Span<const int32_t> ids, absl::string_view what) const;
  Activations* ActivationsFor(int64_t rows, int64_t seq);
  // The first of a layer's standard parameters, and of its RandNLA ones.
  Parameter* LayerParams(int64_t layer);
  Parameter* RandnlaParams(int64_t layer);

  Backend* backend_;
  ModelConfig config_;
  std::unique_ptr<ParameterArena> arena_;
  std::vector<Parameter> parameters_;
  std::vector<int64_t> first_param_;  // per layer, its first parameter's index
  std::unique_ptr<Activations> acts_;
  bool checkpointing_ = false;
  std::function<absl::Status(int64_t offset)> gradients_ready_;
};

// Splits packed rows of seq + 1 tokens (a data_service batch) into inputs
// and next-token targets; the mask of a target is the mask of its token.
TokenBatch MakeTokenBatch(absl::Span<const int32_t> tokens, absl::Span<const uint8_t> mask,
                          int64_t rows, int64_t row_length);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_MODEL_H_
