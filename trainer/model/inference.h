// Inference with a trained checkpoint: loading it for a tokenizer, text
// generation with a KV cache, and exact per-token scoring.
//
// Both prepend the token that starts a document in the training data
// (DocumentStartId: <eos>, since packed streams join documents with it) to
// what they are given; it is context only, never generated, printed or
// scored.

#ifndef MAXIMUS_TRAINER_MODEL_INFERENCE_H_
#define MAXIMUS_TRAINER_MODEL_INFERENCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tokenizer/tokenizer.h"
#include "trainer/backend/backend.h"
#include "trainer/io/checkpoint.h"
#include "trainer/model/model.h"
#include "trainer/model/sampler.h"

namespace maximus::trainer {

struct LoadedModel {
  std::string checkpoint_dir;  // The resolved checkpoint directory.
  ModelConfig config;
  CheckpointState state;
  std::unique_ptr<Model> model;
};

// Loads the checkpoint at `checkpoint_dir_or_run_dir` (a checkpoint
// directory, a directory with a `latest` file, or a run directory with
// checkpoints/latest) onto `backend`. FAILED_PRECONDITION, naming both
// fingerprints, when the checkpoint was trained with another tokenizer.
absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelForInference(
    Backend* backend, const std::string& checkpoint_dir_or_run_dir,
    const tokenizer::Tokenizer& tokenizer);

// The id of "<bos>", or -1 when the tokenizer has none.
int32_t BosId(const tokenizer::Tokenizer& tokenizer);
// What precedes a document in the training data: packed streams join
// documents with the end-of-text token, so a model trained on them knows a
// document's start by the <eos> before it, not by a <bos> it never saw. The
// end-of-text id; <bos> for a tokenizer without one; -1 if neither.
int32_t DocumentStartId(const tokenizer::Tokenizer& tokenizer);
// The tokens that end a generation: the end-of-text token (EndOfTextId) and
// Gemma's <end_of_turn>, those the tokenizer has.
std::vector<int32_t> StopTokenIds(const tokenizer::Tokenizer& tokenizer);

// Turns a growing list of generated ids into text to print, never cutting a
// UTF-8 character: each call decodes the whole list and returns the part
// not yet returned, holding back a trailing U+FFFD (the decoding of a
// character whose remaining bytes have not been generated yet).
class IncrementalDetokenizer {
 public:
  explicit IncrementalDetokenizer(const tokenizer::Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  absl::StatusOr<std::string> Next(absl::Span<const int32_t> ids);
  // Whatever was held back (the list is complete).
  absl::StatusOr<std::string> Finish(absl::Span<const int32_t> ids);

 private:
  absl::StatusOr<std::string> Emit(absl::Span<const int32_t> ids, bool final);
  const tokenizer::Tokenizer& tokenizer_;
  size_t emitted_ = 0;  // Bytes of the decoded text returned so far.
};

struct GenerateOptions {
  SamplingOptions sampling;
  int64_t max_new_tokens = 64;
  // The KV cache holds min(prompt + max_new_tokens, max_context) positions;
  // generation stops when it is full. A longer prompt is INVALID_ARGUMENT.
  int64_t max_context = 2048;
  // Empty: StopTokenIds(tokenizer).
  std::vector<int32_t> stop_ids;
};

struct GenerateResult {
  std::vector<int32_t> prompt_ids;  // As fed: DocumentStartId first.
  std::vector<int32_t> ids;         // Generated, without the stop token.
  std::string text;                 // The decoding of `ids`.
  int32_t stop_id = -1;             // The stop token that ended it; -1: length or context.
  double prompt_seconds = 0;        // Feeding the prompt.
  double generate_seconds = 0;      // Sampling and feeding the new tokens.
  // Sampled tokens (the stop token included) per second of generate_seconds.
  double tokens_per_second = 0;
};

// Generates a continuation of `prompt`; `on_text`, when set, receives the
// text as it is produced (the pieces concatenate to `text`).
absl::StatusOr<GenerateResult> Generate(Model& model, const tokenizer::Tokenizer& tokenizer,
                                        absl::string_view prompt, const GenerateOptions& options,
                                        const std::function<void(absl::string_view)>& on_text = {});

struct ScoreOptions {
  // The most positions one forward pass sees (the model's training context
  // is a good choice). A longer text is scored in windows of this size that
  // overlap by half: window w starts at position w * (context - context / 2)
  // of the sequence after the document start (only the first window sees it)
  // and scores only the tokens the previous windows have not, so every
  // token is predicted from at least context / 2 tokens before it (or from
  // all of them, near the start).
  int64_t context = 512;
};

struct ScoreResult {
  std::vector<int32_t> tokens;  // The text's tokens (without the document start).
  // log p(tokens[i] | start, tokens[0..i-1]), exact (the tokens of its
  // window only, for long texts).
  std::vector<float> logprobs;
  double perplexity = 0;  // exp(-mean(logprobs)).
};

// Scores the text's tokens given the document start (or, for a tokenizer
// without one, the tokens after the first). INVALID_ARGUMENT when nothing is left to
// score.
absl::StatusOr<ScoreResult> Score(Model& model, const tokenizer::Tokenizer& tokenizer,
                                  absl::string_view text, const ScoreOptions& options);
// The same on ids: scores sequence[1..] given what precedes each.
absl::StatusOr<ScoreResult> ScoreSequence(Model& model, absl::Span<const int32_t> sequence,
                                          const ScoreOptions& options);
// {"tokens": [...], "logprobs": [...], "perplexity": x} on one line.
std::string ScoreResultToJson(const ScoreResult& result);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_MODEL_INFERENCE_H_
