// Exact per-token log-probabilities of a text under a checkpoint:
//   bazel run //trainer:score -- --checkpoint=runs/default --text_file=F [--context=512]
// prints one line of JSON,
//   {"tokens": [ids...], "logprobs": [...], "perplexity": x}
// where logprobs[i] = ln p(tokens[i] | start, tokens[0..i-1]) under the
// full softmax; the document start (<eos>, as in the packed training data) is prepended as context
// and not scored itself. Texts longer than --context positions are scored in windows overlapping by
// half (inference.h). --text_file=- reads stdin. Exit status 0, 1 on an error, 2 on a bad flag
// value.

#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
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
ABSL_FLAG(std::string, text_file, "", "The text to score (UTF-8); - for stdin");
ABSL_FLAG(int64_t, context, 512,
          "Positions per forward pass (the model's training context); longer texts are scored "
          "in windows overlapping by half");

namespace maximus::trainer {
namespace {

// Exit status 1 for errors, 2 for bad flag values.
int Fail(const absl::Status& status, int exit_status = 1) {
  absl::FPrintF(stderr, "score: %s\n", status.message());
  return exit_status;
}

absl::StatusOr<std::string> ReadText(const std::string& flag) {
  if (flag == "-") {
    return std::string(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  const std::string path = ResolveUserPath(flag);
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read --text_file ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

int Main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "score --text_file=F [--checkpoint=DIR] [--tokenizer=PATH] [--context=512]\n"
      "Prints the exact log-probability of every token of a text as JSON.");
  absl::ParseCommandLine(argc, argv);
  ScoreOptions options;
  options.context = absl::GetFlag(FLAGS_context);
  if (options.context < 1) {
    return Fail(absl::InvalidArgumentError("--context must be >= 1"), 2);
  }
  if (absl::GetFlag(FLAGS_text_file).empty()) {
    return Fail(absl::InvalidArgumentError("--text_file=PATH is required"), 2);
  }
  absl::StatusOr<std::string> text = ReadText(absl::GetFlag(FLAGS_text_file));
  if (!text.ok()) return Fail(text.status());

  absl::StatusOr<std::unique_ptr<tokenizer::Tokenizer>> tokenizer =
      LoadTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (!tokenizer.ok()) return Fail(tokenizer.status());
  const std::string checkpoint = CheckpointFromFlag(absl::GetFlag(FLAGS_checkpoint));
  absl::StatusOr<std::unique_ptr<Backend>> backend = MakeBackend(absl::GetFlag(FLAGS_backend));
  if (!backend.ok()) return Fail(backend.status(), 2);
  absl::StatusOr<std::unique_ptr<LoadedModel>> loaded =
      LoadModelForInference(backend->get(), checkpoint, **tokenizer);
  if (!loaded.ok()) return Fail(loaded.status());

  absl::StatusOr<ScoreResult> result = Score(*(*loaded)->model, **tokenizer, *text, options);
  if (!result.ok()) return Fail(result.status());
  const std::string json = ScoreResultToJson(*result) + "\n";
  fwrite(json.data(), 1, json.size(), stdout);
  return fflush(stdout) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) { return maximus::trainer::Main(argc, argv); }
