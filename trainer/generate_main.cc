// Text generation from a checkpoint, streamed to stdout as it is sampled:
//   bazel run //trainer:generate -- [--checkpoint=runs/default] \
//       [--prompt="It is a truth universally acknowledged"] [--max_new_tokens=64] \
//       [--temperature=0.8] [--top_k=40] [--repetition_penalty=1.1] [--seed=0]
// The prompt is not echoed; speed goes to stderr. Exit status 0, 1 on an
// error, 2 on a bad flag value.

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "tokenizer/tokenizer.h"
#include "trainer/backend/select_backend.h"
#include "trainer/model/inference.h"
#include "trainer/run_setup.h"

ABSL_FLAG(std::string, checkpoint, "",
          "A checkpoint directory, or a run directory with checkpoints/latest (default: "
          "runs/default)");
ABSL_FLAG(std::string, backend, "auto", maximus::trainer::kBackendFlagHelp);
ABSL_FLAG(std::string, tokenizer, "",
          "The run's tokenizer.json (default: the Gemma 3 tokenizer among the runfiles or in "
          "~/.cache/maximus)");
ABSL_FLAG(std::string, prompt, "It is a truth universally acknowledged", "Text to continue");
ABSL_FLAG(int64_t, max_new_tokens, 64, "Tokens to generate at most");
ABSL_FLAG(int64_t, max_context, 2048, "Positions of the KV cache at most (prompt included)");
ABSL_FLAG(double, temperature, 0.8, "Softmax temperature; 0: greedy");
ABSL_FLAG(int, top_k, 40, "Sample among the k most likely tokens; 0: all");
ABSL_FLAG(double, repetition_penalty, 1.1, "CTRL repetition penalty; 1: none");
ABSL_FLAG(uint64_t, seed, 0, "Sampling seed");

namespace maximus::trainer {
namespace {

// Exit status 1 for errors, 2 for bad flag values.
int Fail(const absl::Status& status, int exit_status = 1) {
  absl::FPrintF(stderr, "generate: %s\n", status.message());
  return exit_status;
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "generate [--checkpoint=DIR] [--tokenizer=PATH] [--prompt=TEXT] [--max_new_tokens=64]\n"
      "         [--temperature=0.8] [--top_k=40] [--repetition_penalty=1.1] [--seed=0]\n"
      "Continues a prompt with a trained checkpoint.");
  absl::ParseCommandLine(argc, argv);
  GenerateOptions options;
  options.sampling.temperature = static_cast<float>(absl::GetFlag(FLAGS_temperature));
  options.sampling.top_k = absl::GetFlag(FLAGS_top_k);
  options.sampling.repetition_penalty = static_cast<float>(absl::GetFlag(FLAGS_repetition_penalty));
  options.sampling.seed = absl::GetFlag(FLAGS_seed);
  options.max_new_tokens = absl::GetFlag(FLAGS_max_new_tokens);
  options.max_context = absl::GetFlag(FLAGS_max_context);
  if (absl::Status s = ValidateSamplingOptions(options.sampling); !s.ok()) return Fail(s, 2);
  if (options.max_new_tokens < 0) {
    return Fail(absl::InvalidArgumentError("--max_new_tokens must be >= 0"), 2);
  }
  if (options.max_context < 1) {
    return Fail(absl::InvalidArgumentError("--max_context must be >= 1"), 2);
  }

  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
      LoadTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  const std::string checkpoint = CheckpointFromFlag(absl::GetFlag(FLAGS_checkpoint));
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(absl::GetFlag(FLAGS_backend));
  if (!backend.ok()) return Fail(backend.status(), 2);
  absl::StatusOr<std::unique_ptr<LoadedModel>> loaded =
      LoadModelForInference(backend->get(), checkpoint, **tokenizer);
  if (!loaded.ok()) return Fail(loaded.status());

  absl::StatusOr<GenerateResult> result =
      Generate(*(*loaded)->model, **tokenizer, absl::GetFlag(FLAGS_prompt), options,
               [](absl::string_view piece) {
                 fwrite(piece.data(), 1, piece.size(), stdout);
                 fflush(stdout);
               });
  if (!result.ok()) {
    fputc('\n', stdout);
    return Fail(result.status());
  }
  fputc('\n', stdout);
  fflush(stdout);
  const std::string* stop =
      result->stop_id >= 0 ? (*tokenizer)->IdToToken(result->stop_id) : nullptr;
  absl::FPrintF(stderr,
                "generate: %s step %d; prompt %d tokens in %.3f s; %d new tokens in %.3f s "
                "(%.1f tokens/s); stopped at %s\n",
                (*loaded)->checkpoint_dir, (*loaded)->state.step, result->prompt_ids.size(),
                result->prompt_seconds, result->ids.size() + (result->stop_id >= 0 ? 1 : 0),
                result->generate_seconds, result->tokens_per_second,
                stop != nullptr ? *stop : "the token limit");
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) { return maximus::trainer::Main(argc, argv); }
