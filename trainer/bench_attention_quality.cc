// Standard against RandNLA attention: trains the same model twice on the same
// data, steps and seed, once with standard (causal softmax) attention and once
// with RandNLA attention (kernels/randnla_attention.md), and reports both
// exact-CE validation curves and wall times; then a needle-in-a-haystack
// check on each trained model.
//
//   ./bazelw run //trainer:bench_attention_quality [-- --steps=300 --seq_len=512]
//
// The needle: "The secret number of <name> is <4 digits>." planted after the
// first paragraph of a long passage (the haystack, Persuasion by default),
// and at its end "The secret number of <name> is" followed by the number.
// Each trial scores log p(number) twice: with the needle telling that number,
// and with the needle telling another; a model that reads the needle prefers
// the first. Reported: the mean gain in nats and the share of trials where
// the right needle scores higher (0.5 by chance).

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "trainer/bench_runs.h"
#include "trainer/run_setup.h"

ABSL_FLAG(std::string, standard_attention_layers, "",
          "Layers that keep standard attention in the RandNLA run (\"0,3\"; empty: none)");
ABSL_FLAG(int, needle_trials, 24, "Needle trials per context length");
ABSL_FLAG(std::string, needle_lengths, "",
          "Context lengths in tokens for the needle check, comma-separated (default: seq_len "
          "and 4 x seq_len)");
ABSL_FLAG(std::string, haystack, "",
          "Text file the haystack passages come from (default: the sample corpus's "
          "persuasion.txt)");

namespace maximus::trainer {
namespace {

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "bench_attention_quality: %s\n", status.ToString());
  return 1;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The haystack's paragraphs (blank-line separated, non-empty).
absl::StatusOr<std::vector<std::string>> HaystackParagraphs() {
  std::string path = absl::GetFlag(FLAGS_haystack);
  if (path.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(const std::string sample, FindSampleCorpus());
    path = sample + "/persuasion.txt";
  } else {
    path = ResolveUserPath(path);
  }
  MAXIMUS_ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  std::vector<std::string> paragraphs;
  for (absl::string_view p : absl::StrSplit(text, "\n\n", absl::SkipWhitespace())) {
    paragraphs.emplace_back(p);
  }
  if (paragraphs.size() < 4) {
    return absl::InvalidArgumentError(absl::StrCat("--haystack: ", path, " has too few paragraphs"));
  }
  return paragraphs;
}

struct NeedleResult {
  int64_t length = 0;
  int trials = 0;
  int skipped = 0;  // The answer did not tokenize apart from the question.
  double mean_gain = 0;
  double preferred = 0;
};

// One needle text: paragraphs from `first` until about `length` tokens, the
// needle after the first, the question at the end; `answer` appended when
// not empty.
std::string NeedleText(const std::vector<std::string>& paragraphs, size_t first, int64_t length,
                       const std::string& needle, const std::string& question,
                       const tokenizer::Tokenizer& tok) {
  std::string text;
  int64_t tokens = 0;
  const int64_t reserve = 32;  // The needle and the question.
  for (size_t i = first; tokens + reserve < length; i = (i + 1) % paragraphs.size()) {
    const std::string& p = paragraphs[i];
    absl::StatusOr<std::vector<int32_t>> ids = tok.Encode(p);
    const int64_t n = ids.ok() ? static_cast<int64_t>(ids->size()) : 0;
    if (tokens + n + reserve > length && !text.empty()) break;
    absl::StrAppend(&text, text.empty() ? "" : "\n\n", p);
    tokens += n + 2;
    if (i == first) absl::StrAppend(&text, "\n\n", needle);
  }
  absl::StrAppend(&text, "\n\n", question);
  return text;
}

absl::StatusOr<NeedleResult> NeedleCheck(Model& model, const tokenizer::Tokenizer& tok,
                                         const std::vector<std::string>& paragraphs,
                                         int64_t length) {
  static const char* const kNames[] = {"Anne",    "Frederick", "Mary",   "Charles", "Louisa",
                                       "Henrietta", "William",  "Walter", "Harville", "Benwick"};
  std::mt19937_64 rng(length);
  NeedleResult result;
  result.length = length;
  double gain_sum = 0;
  int preferred = 0;
  for (int trial = 0; trial < absl::GetFlag(FLAGS_needle_trials); ++trial) {
    const std::string name = kNames[rng() % 10];
    const int right = 1000 + static_cast<int>(rng() % 9000);
    int wrong = 1000 + static_cast<int>(rng() % 9000);
    if (wrong == right) wrong = right == 9999 ? 1000 : right + 1;
    const size_t first = rng() % paragraphs.size();
    const std::string question = absl::StrCat("The secret number of ", name, " is");
    double logp[2] = {0, 0};
    bool skipped = false;
    for (int told = 0; told < 2 && !skipped; ++told) {
      const std::string needle =
          absl::StrCat("The secret number of ", name, " is ", told == 0 ? right : wrong, ".");
      const std::string prompt = NeedleText(paragraphs, first, length, needle, question, tok);
      MAXIMUS_ASSIGN_OR_RETURN(std::vector<int32_t> prompt_ids,
                               tok.Encode(prompt, {.add_special_tokens = true}));
      MAXIMUS_ASSIGN_OR_RETURN(
          std::vector<int32_t> ids,
          tok.Encode(absl::StrCat(prompt, " ", right, "."), {.add_special_tokens = true}));
      if (ids.size() <= prompt_ids.size() ||
          !std::equal(prompt_ids.begin(), prompt_ids.end(), ids.begin())) {
        skipped = true;
        break;
      }
      TokenBatch batch;
      batch.rows = 1;
      batch.seq = static_cast<int64_t>(ids.size()) - 1;
      batch.inputs.assign(ids.begin(), ids.end() - 1);
      batch.targets.assign(ids.begin() + 1, ids.end());
      MAXIMUS_ASSIGN_OR_RETURN(const std::vector<float> token_logp, model.TokenLogProbs(batch));
      // The answer's tokens are the targets from position prompt_ids.size() - 1.
      for (size_t t = prompt_ids.size() - 1; t < token_logp.size(); ++t) logp[told] += token_logp[t];
    }
    if (skipped) {
      ++result.skipped;
      continue;
    }
    ++result.trials;
    gain_sum += logp[0] - logp[1];
    preferred += logp[0] > logp[1] ? 1 : 0;
  }
  if (result.trials > 0) {
    result.mean_gain = gain_sum / result.trials;
    result.preferred = static_cast<double>(preferred) / result.trials;
  }
  return result;
}

int Main() {
  absl::StatusOr<BenchSetup> setup = SetUpBench("bench_attention_quality");
  if (!setup.ok()) return Fail(setup.status());
  const RunConfig& run = setup->run;
  absl::StatusOr<std::vector<std::string>> paragraphs = HaystackParagraphs();
  if (!paragraphs.ok()) return Fail(paragraphs.status());
  std::vector<int64_t> lengths;
  if (absl::GetFlag(FLAGS_needle_lengths).empty()) {
    lengths = {run.seq_len(), 4 * run.seq_len()};
  } else {
    for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_needle_lengths), ',')) {
      int64_t length = 0;
      if (!absl::SimpleAtoi(part, &length) || length < 64) {
        return Fail(absl::InvalidArgumentError(
            absl::StrCat("--needle_lengths: \"", part, "\" is not a length of at least 64")));
      }
      lengths.push_back(length);
    }
  }

  struct Variant {
    std::string name;
    std::string attention;
    BenchRun run;
    std::vector<NeedleResult> needles;
  };
  std::vector<Variant> variants = {{"standard", "standard", {}, {}},
                                   {"randnla", "randnla", {}, {}}};
  for (Variant& v : variants) {
    TrainerOptions options = setup->base;
    options.run.set_attention(v.attention);
    options.run.set_standard_attention_layers(
        v.attention == "randnla" ? absl::GetFlag(FLAGS_standard_attention_layers) : "");
    options.run.set_out_dir(setup->out_dir + "/" + v.name);
    absl::FPrintF(stderr, "--- %s attention ---\n", v.name);
    absl::StatusOr<BenchRun> result =
        TrainBenchRun(setup->data.get(), options, [&](Trainer& trainer) -> absl::Status {
          for (int64_t length : lengths) {
            MAXIMUS_ASSIGN_OR_RETURN(
                NeedleResult needle,
                NeedleCheck(trainer.model(), *setup->tokenizer, *paragraphs, length));
            v.needles.push_back(needle);
          }
          return absl::OkStatus();
        });
    if (!result.ok()) {
      absl::FPrintF(stderr, "bench_attention_quality: %s: %s\n", v.name,
                    result.status().ToString());
      return 1;
    }
    v.run = *result;
  }
  const Variant& standard = variants[0];
  const Variant& randnla = variants[1];
  absl::PrintF("model %s, %d steps of %d x %d tokens, seed %d, loss %s, %u threads\n\n",
               setup->base.model.name, run.steps(), run.batch(), run.seq_len(), run.seed(),
               LossFlagValue(run.loss()), std::thread::hardware_concurrency());
  absl::PrintF("| step | val loss, standard | val loss, RandNLA |\n|---:|---:|---:|\n");
  for (const auto& [step, value] : standard.run.validation) {
    auto it = randnla.run.validation.find(step);
    absl::PrintF("| %d | %.4f | %.4f |\n", step, value,
                 it == randnla.run.validation.end() ? NAN : it->second);
  }
  absl::PrintF("\n| | standard | RandNLA |\n|---|---:|---:|\n");
  absl::PrintF("| final validation loss (exact CE) | %.4f | %.4f |\n",
               standard.run.validation.rbegin()->second, randnla.run.validation.rbegin()->second);
  absl::PrintF("| training time (the run less its validation passes) | %.1f s | %.1f s |\n",
               standard.run.train_seconds, randnla.run.train_seconds);
  for (size_t i = 0; i < lengths.size(); ++i) {
    const NeedleResult& a = standard.needles[i];
    const NeedleResult& b = randnla.needles[i];
    absl::PrintF(
        "| needle at %d tokens: log p gain of the told number (nats), share preferred | "
        "%+.3f, %.2f (%d trials) | %+.3f, %.2f (%d trials) |\n",
        lengths[i], a.mean_gain, a.preferred, a.trials, b.mean_gain, b.preferred, b.trials);
    if (a.skipped + b.skipped > 0) {
      absl::PrintF("| needle at %d tokens: trials skipped (answer not separable) | %d | %d |\n",
                   lengths[i], a.skipped, b.skipped);
    }
  }
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::trainer::Main();
}
