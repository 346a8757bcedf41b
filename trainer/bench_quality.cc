// MAXIS against exact cross-entropy: trains the same model twice on the same
// data, steps and seed, once with each loss, and reports both exact-CE
// validation curves and wall times.
//
//   ./bazelw run //trainer:bench_quality [-- --steps=200 --preset=tiny]
//
// "Share of CE's gain" is (L0 − L_maxis) / (L0 − L_ce) with L0 the
// validation loss before training: how much of the loss reduction exact CE
// achieves MAXIS achieves in the same steps.

#include <chrono>
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/run_setup.h"
#include "trainer/trainer.h"

ABSL_FLAG(std::string, preset, "tiny", "Model preset or config JSON");
ABSL_FLAG(int64_t, steps, 150, "Optimizer steps of each run");
ABSL_FLAG(int64_t, batch, 4, "Sequences per step");
ABSL_FLAG(int64_t, seq_len, 128, "Tokens per sequence");
ABSL_FLAG(double, lr, 3e-3, "Peak learning rate");
ABSL_FLAG(int64_t, eval_interval, 25, "Steps between validation losses");
ABSL_FLAG(int64_t, eval_batches, 8, "Validation batches");
ABSL_FLAG(std::string, data, "", "Embedded store (default runs/store) or host:port list");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json (default: Gemma 3)");
ABSL_FLAG(std::string, out_dir, "", "Where both runs write (default runs/bench_quality)");
ABSL_FLAG(uint64_t, seed, 1, "Seed of both runs");

namespace maximus::trainer {
namespace {

struct RunResult {
  std::map<int64_t, double> validation;  // step -> exact CE
  double seconds = 0;
  double train_seconds = 0;  // the run without its validation passes
};

absl::StatusOr<RunResult> TrainOnce(data::DataSource* data, TrainerOptions options) {
  CpuBackend backend;
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(&backend, data, options);
  if (!trainer.ok()) return trainer.status();
  const auto start = std::chrono::steady_clock::now();
  if (absl::Status s = (*trainer)->Run(); !s.ok()) return s;
  RunResult result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t next = 0;
  for (const MetricPoint& p : (*trainer)->MetricsSince(0, &next)) {
    if (p.tag == "val/loss") result.validation[p.step] = p.value;
  }
  result.train_seconds = result.seconds - (*trainer)->status().validation_seconds;
  return result;
}

int Main() {
  auto tok = LoadTokenizer(absl::GetFlag(FLAGS_tokenizer));
  if (!tok.ok()) {
    absl::FPrintF(stderr, "bench_quality: %s\n", tok.status().ToString());
    return 1;
  }
  DataOptions data_options;
  data_options.data =
      absl::GetFlag(FLAGS_data).empty() ? DefaultRunDir("store") : absl::GetFlag(FLAGS_data);
  if (absl::StatusOr<std::string> sample = FindSampleCorpus(); sample.ok()) {
    data_options.ingest_if_empty.push_back(*sample);
  }
  auto data = OpenData(data_options, **tok);
  if (!data.ok()) {
    absl::FPrintF(stderr, "bench_quality: %s\n", data.status().ToString());
    return 1;
  }
  auto model = ModelConfigFromFlag(absl::GetFlag(FLAGS_preset));
  if (!model.ok()) {
    absl::FPrintF(stderr, "bench_quality: %s\n", model.status().ToString());
    return 1;
  }
  const std::string out = absl::GetFlag(FLAGS_out_dir).empty()
                              ? DefaultRunDir("bench_quality")
                              : ResolveUserPath(absl::GetFlag(FLAGS_out_dir));
  TrainerOptions base;
  base.model = *model;
  base.steps = absl::GetFlag(FLAGS_steps);
  base.batch_rows = absl::GetFlag(FLAGS_batch);
  base.seq_len = absl::GetFlag(FLAGS_seq_len);
  base.schedule.peak_lr = static_cast<float>(absl::GetFlag(FLAGS_lr));
  base.schedule.total_steps = base.steps;
  base.schedule.warmup_steps = std::max<int64_t>(1, base.steps / 10);
  base.eval_interval = absl::GetFlag(FLAGS_eval_interval);
  base.eval_batches = absl::GetFlag(FLAGS_eval_batches);
  base.seed = absl::GetFlag(FLAGS_seed);
  base.log_interval = std::max<int64_t>(1, base.steps / 10);
  base.tokenizer_fingerprint = (*tok)->fingerprint();
  base.tokenizer_vocab_size = (*tok)->vocab_size();
  base.required_vocab_size = (*tok)->model().vocab_size();
  base.checkpoint_interval = 0;

  std::map<std::string, RunResult> results;
  for (const std::string loss : {"maxis", "ce"}) {
    TrainerOptions options = base;
    options.loss.kind = loss == "maxis" ? LossKind::kMaxis : LossKind::kCrossEntropy;
    options.out_dir = out + "/" + loss;
    absl::FPrintF(stderr, "--- %s ---\n", loss);
    absl::StatusOr<RunResult> result = TrainOnce(data->get(), options);
    if (!result.ok()) {
      absl::FPrintF(stderr, "bench_quality: %s: %s\n", loss, result.status().ToString());
      return 1;
    }
    results[loss] = *result;
  }
  const RunResult& maxis = results["maxis"];
  const RunResult& ce = results["ce"];
  absl::PrintF("model %s, %d steps of %d x %d tokens, seed %d, %u threads\n\n", base.model.name,
               base.steps, base.batch_rows, base.seq_len, base.seed,
               std::thread::hardware_concurrency());
  absl::PrintF("| step | val loss, MAXIS | val loss, CE |\n|---:|---:|---:|\n");
  for (const auto& [step, value] : ce.validation) {
    auto it = maxis.validation.find(step);
    absl::PrintF("| %d | %.4f | %.4f |\n", step, it == maxis.validation.end() ? NAN : it->second,
                 value);
  }
  const double l0 = ce.validation.begin()->second;
  const double lm = maxis.validation.rbegin()->second;
  const double lc = ce.validation.rbegin()->second;
  absl::PrintF("\n| | MAXIS | CE |\n|---|---:|---:|\n");
  absl::PrintF("| final validation loss (exact CE) | %.4f | %.4f |\n", lm, lc);
  absl::PrintF("| wall time, whole run | %.1f s | %.1f s |\n", maxis.seconds, ce.seconds);
  absl::PrintF("| training time (the run less its validation passes) | %.1f s | %.1f s |\n",
               maxis.train_seconds, ce.train_seconds);
  absl::PrintF("| training time per step | %.2f s | %.2f s |\n", maxis.train_seconds / base.steps,
               ce.train_seconds / base.steps);
  absl::PrintF(
      "\nshare of CE's gain: (L0 - L_maxis) / (L0 - L_ce) = (%.4f - %.4f) / (%.4f - %.4f) "
      "= %.1f%%\n",
      l0, lm, l0, lc, 100 * (l0 - lm) / (l0 - lc));
  absl::PrintF("training speed: MAXIS %.2fx the speed of CE\n",
               ce.train_seconds / std::max(maxis.train_seconds, 1e-9));
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::trainer::Main();
}
