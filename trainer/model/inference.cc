#include "trainer/model/inference.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "base/status_macros.h"
#include "nlohmann/json.hpp"
#include "tokenizer/end_of_text.h"

namespace maximus::trainer {
namespace {

constexpr absl::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

bool Contains(absl::Span<const int32_t> ids, int32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

}  // namespace

absl::StatusOr<std::unique_ptr<LoadedModel>> LoadModelForInference(
    Backend* backend, const std::string& checkpoint_dir_or_run_dir,
    const tokenizer::Tokenizer& tokenizer) {
  absl::StatusOr<std::string> dir = ResolveCheckpointDir(checkpoint_dir_or_run_dir);
  if (!dir.ok()) return dir.status();
  auto loaded = std::make_unique<LoadedModel>();
  loaded->checkpoint_dir = *dir;
  absl::StatusOr<CheckpointState> state = ReadCheckpointState(*dir, &loaded->config);
  if (!state.ok()) return state.status();
  loaded->state = *std::move(state);
  if (loaded->state.tokenizer_fingerprint != tokenizer.fingerprint()) {
    return absl::FailedPreconditionError(
        absl::StrCat("the checkpoint ", *dir, " was trained with tokenizer ",
                     loaded->state.tokenizer_fingerprint, ", not with this tokenizer, ",
                     tokenizer.fingerprint(), ": pass the run's tokenizer.json with --tokenizer"));
  }
  absl::StatusOr<std::unique_ptr<Model>> model = Model::Create(backend, loaded->config);
  if (!model.ok()) return model.status();
  loaded->model = *std::move(model);
  if (absl::Status s = LoadCheckpointTensors(*dir, *loaded->model, nullptr, nullptr); !s.ok()) {
    return s;
  }
  return loaded;
}

int32_t BosId(const tokenizer::Tokenizer& tokenizer) { return tokenizer.TokenToId("<bos>"); }

int32_t DocumentStartId(const tokenizer::Tokenizer& tokenizer) {
  absl::StatusOr<int32_t> eos = tokenizer::EndOfTextId(tokenizer);
  return eos.ok() ? *eos : BosId(tokenizer);
}

std::vector<int32_t> StopTokenIds(const tokenizer::Tokenizer& tokenizer) {
  std::vector<int32_t> ids;
  if (absl::StatusOr<int32_t> eos = tokenizer::EndOfTextId(tokenizer); eos.ok()) {
    ids.push_back(*eos);
  }
  const int32_t end_of_turn = tokenizer.TokenToId("<end_of_turn>");
  if (end_of_turn >= 0 && !Contains(ids, end_of_turn)) ids.push_back(end_of_turn);
  return ids;
}

absl::StatusOr<std::string> IncrementalDetokenizer::Next(absl::Span<const int32_t> ids) {
  return Emit(ids, /*final=*/false);
}

absl::StatusOr<std::string> IncrementalDetokenizer::Finish(absl::Span<const int32_t> ids) {
  return Emit(ids, /*final=*/true);
}

absl::StatusOr<std::string> IncrementalDetokenizer::Emit(absl::Span<const int32_t> ids,
                                                         bool final) {
  absl::StatusOr<std::string> text = tokenizer_.Decode(ids);
  if (!text.ok()) return text.status();
  absl::string_view ready = *text;
  if (!final) {
    while (absl::EndsWith(ready, kReplacementCharacter)) {
      ready.remove_suffix(kReplacementCharacter.size());
    }
  }
  if (ready.size() <= emitted_) return std::string();
  std::string piece(ready.substr(emitted_));
  emitted_ = ready.size();
  return piece;
}

absl::StatusOr<GenerateResult> Generate(Model& model, const tokenizer::Tokenizer& tokenizer,
                                        absl::string_view prompt, const GenerateOptions& options,
                                        const std::function<void(absl::string_view)>& on_text) {
  absl::StatusOr<Sampler> sampler = Sampler::Create(options.sampling);
  if (!sampler.ok()) return sampler.status();
  if (options.max_new_tokens < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_new_tokens must be >= 0, not ", options.max_new_tokens));
  }
  GenerateResult result;
  if (const int32_t start = DocumentStartId(tokenizer); start >= 0) {
    result.prompt_ids.push_back(start);
  }
  absl::StatusOr<std::vector<int32_t>> encoded = tokenizer.Encode(prompt);
  if (!encoded.ok()) return encoded.status();
  result.prompt_ids.insert(result.prompt_ids.end(), encoded->begin(), encoded->end());
  const int64_t prompt_size = static_cast<int64_t>(result.prompt_ids.size());
  if (prompt_size == 0) {
    return absl::InvalidArgumentError("--prompt is empty and the tokenizer has no <eos> or <bos>");
  }
  if (prompt_size > options.max_context) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the prompt has ", prompt_size, " tokens, more than --max_context=", options.max_context));
  }
  if (options.max_new_tokens == 0) return result;
  const std::vector<int32_t> stop_ids =
      options.stop_ids.empty() ? StopTokenIds(tokenizer) : options.stop_ids;

  const absl::Time start = absl::Now();
  const int64_t capacity = std::min(prompt_size + options.max_new_tokens, options.max_context);
  std::unique_ptr<Model::Decoder> decoder = model.NewDecoder(capacity);
  std::vector<float> logits;
  MAXIMUS_RETURN_IF_ERROR(decoder->Feed(result.prompt_ids, &logits));
  const absl::Time prompt_done = absl::Now();

  // The repetition penalty sees the whole context: prompt and generation.
  std::vector<int32_t> context = result.prompt_ids;
  IncrementalDetokenizer detokenizer(tokenizer);
  int64_t sampled = 0;
  while (true) {
    const int32_t id = sampler->Sample(absl::MakeSpan(logits), context);
    ++sampled;
    if (Contains(stop_ids, id)) {
      result.stop_id = id;
      break;
    }
    result.ids.push_back(id);
    context.push_back(id);
    if (on_text) {
      absl::StatusOr<std::string> piece = detokenizer.Next(result.ids);
      if (!piece.ok()) return piece.status();
      if (!piece->empty()) on_text(*piece);
    }
    if (static_cast<int64_t>(result.ids.size()) == options.max_new_tokens) break;
    if (decoder->position() >= capacity) break;  // The context is full.
    const int32_t fed[] = {id};
    MAXIMUS_RETURN_IF_ERROR(decoder->Feed(fed, &logits));
  }
  const absl::Time done = absl::Now();

  absl::StatusOr<std::string> text = tokenizer.Decode(result.ids);
  if (!text.ok()) return text.status();
  result.text = *std::move(text);
  if (on_text) {
    absl::StatusOr<std::string> rest = detokenizer.Finish(result.ids);
    if (!rest.ok()) return rest.status();
    if (!rest->empty()) on_text(*rest);
  }
  result.prompt_seconds = absl::ToDoubleSeconds(prompt_done - start);
  result.generate_seconds = absl::ToDoubleSeconds(done - prompt_done);
  result.tokens_per_second = result.generate_seconds > 0 ? sampled / result.generate_seconds : 0;
  return result;
}

absl::StatusOr<ScoreResult> ScoreSequence(Model& model, absl::Span<const int32_t> sequence,
                                          const ScoreOptions& options) {
  if (options.context < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--context must be at least 1, not ", options.context));
  }
  const int64_t n = static_cast<int64_t>(sequence.size()) - 1;  // Tokens to score.
  if (n < 1) return absl::InvalidArgumentError("no tokens to score: the text is empty");
  const int64_t context = options.context;
  const int64_t stride = context - context / 2;
  ScoreResult result;
  result.tokens.assign(sequence.begin() + 1, sequence.end());
  result.logprobs.reserve(n);
  // Window at `begin` feeds sequence[begin, end) and predicts
  // sequence[begin + 1, end]; it keeps the predictions of the targets after
  // `scored` (those of sequence[scored + 1 .. end]).
  int64_t scored = 0;
  for (int64_t begin = 0; scored < n; begin += stride) {
    const int64_t end = std::min(begin + context, n);
    TokenBatch batch;
    batch.rows = 1;
    batch.seq = end - begin;
    batch.inputs.assign(sequence.begin() + begin, sequence.begin() + end);
    batch.targets.assign(sequence.begin() + begin + 1, sequence.begin() + end + 1);
    absl::StatusOr<std::vector<float>> logprobs = model.TokenLogProbs(batch);
    if (!logprobs.ok()) return logprobs.status();
    for (int64_t target = scored + 1; target <= end; ++target) {
      result.logprobs.push_back((*logprobs)[target - 1 - begin]);
    }
    scored = end;
  }
  double sum = 0;
  for (float lp : result.logprobs) sum += lp;
  result.perplexity = std::exp(-sum / static_cast<double>(n));
  return result;
}

absl::StatusOr<ScoreResult> Score(Model& model, const tokenizer::Tokenizer& tokenizer,
                                  absl::string_view text, const ScoreOptions& options) {
  std::vector<int32_t> sequence;
  if (const int32_t start = DocumentStartId(tokenizer); start >= 0) sequence.push_back(start);
  absl::StatusOr<std::vector<int32_t>> encoded = tokenizer.Encode(text);
  if (!encoded.ok()) return encoded.status();
  sequence.insert(sequence.end(), encoded->begin(), encoded->end());
  return ScoreSequence(model, sequence, options);
}

std::string ScoreResultToJson(const ScoreResult& result) {
  nlohmann::ordered_json j;
  j["tokens"] = result.tokens;
  j["logprobs"] = result.logprobs;
  j["perplexity"] = result.perplexity;
  return j.dump();
}

}  // namespace maximus::trainer
