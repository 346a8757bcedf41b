// Next-token sampling for generation, in the order of the MaximusLLM
// research code's generate loop and of Hugging Face's logits processors:
//   1. repetition penalty (CTRL): for every distinct token already in the
//      context, logit / penalty if the logit is positive, else
//      logit * penalty;
//   2. temperature: logits / T, or, for T = 0, the argmax (greedy);
//   3. top-k: keep the k largest logits (and any tied with the k-th);
//      k = 0 keeps them all;
//   4. softmax over what is kept and one draw from a seeded
//      std::mt19937_64, so a seed reproduces a generation exactly.

#ifndef MAXIMUS_TRAINER_MODEL_SAMPLER_H_
#define MAXIMUS_TRAINER_MODEL_SAMPLER_H_

#include <cstdint>
#include <random>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace maximus::trainer {

struct SamplingOptions {
  float temperature = 0.8f;         // 0: greedy.
  int top_k = 40;                   // 0: the whole vocabulary.
  float repetition_penalty = 1.1f;  // 1: none.
  uint64_t seed = 0;
};

// INVALID_ARGUMENT naming the flag (--temperature, --top_k,
// --repetition_penalty) of a negative or non-finite temperature, a negative
// top-k or a penalty that is not positive.
absl::Status ValidateSamplingOptions(const SamplingOptions& options);

// Step 1 alone, in place; each distinct token of `context` is penalised
// once, however often it occurs. Ids outside `logits` are ignored.
void ApplyRepetitionPenalty(absl::Span<const int32_t> context, float penalty,
                            absl::Span<float> logits);

// The index of the largest value; the lowest such index on ties.
int32_t ArgMax(absl::Span<const float> logits);

class Sampler {
 public:
  static absl::StatusOr<Sampler> Create(const SamplingOptions& options);

  // The next token given the logits of the last position and the tokens
  // before it (the prompt and what has been generated); -1 for empty
  // logits. `logits` is overwritten.
  int32_t Sample(absl::Span<float> logits, absl::Span<const int32_t> context);

  // The distribution Sample draws from (steps 1 to 3 and the softmax), for
  // tests; `logits` is overwritten. For temperature 0, one-hot at the argmax.
  std::vector<double> Distribution(absl::Span<float> logits,
                                   absl::Span<const int32_t> context) const;

  const SamplingOptions& options() const { return options_; }

 private:
  explicit Sampler(const SamplingOptions& options) : options_(options), rng_(options.seed) {}

  SamplingOptions options_;
  std::mt19937_64 rng_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_SAMPLER_H_
