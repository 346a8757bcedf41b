// MAXIS against exact cross-entropy: trains the same model twice on the same
// data, steps and seed, once with each loss, and reports both exact-CE
// validation curves and wall times.
//
//   ./bazelw run //trainer:bench_quality [-- --steps=200 --preset=tiny]
//
// "Share of CE's gain" is (L0 − L_maxis) / (L0 − L_ce) with L0 the
// validation loss before training: how much of the loss reduction exact CE
// achieves MAXIS achieves in the same steps.

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <thread>

#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "trainer/bench_runs.h"

namespace maximus::trainer {
namespace {

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "bench_quality: %s\n", status.ToString());
  return 1;
}

int Main() {
  absl::StatusOr<BenchSetup> setup = SetUpBench("bench_quality");
  if (!setup.ok()) return Fail(setup.status());
  const RunConfig& run = setup->run;
  std::map<std::string, BenchRun> results;
  for (const std::string loss : {"maxis", "ce"}) {
    TrainerOptions options = setup->base;
    options.run.set_loss(loss == "maxis" ? RunConfig::MAXIS : RunConfig::CE);
    options.run.set_out_dir(setup->out_dir + "/" + loss);
    absl::FPrintF(stderr, "--- %s ---\n", loss);
    absl::StatusOr<BenchRun> result = TrainBenchRun(setup->data.get(), options);
    if (!result.ok()) {
      absl::FPrintF(stderr, "bench_quality: %s: %s\n", loss, result.status().ToString());
      return 1;
    }
    results[loss] = *result;
  }
  const BenchRun& maxis = results["maxis"];
  const BenchRun& ce = results["ce"];
  absl::PrintF("model %s, %d steps of %d x %d tokens, seed %d, %u threads\n\n",
               setup->base.model.name, run.steps(), run.batch(), run.seq_len(), run.seed(),
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
  absl::PrintF("| training time per step | %.2f s | %.2f s |\n", maxis.train_seconds / run.steps(),
               ce.train_seconds / run.steps());
  absl::PrintF(
      "\nshare of CE's gain: (L0 - L_maxis) / (L0 - L_ce) = (%.4f - %.4f) / (%.4f - %.4f) "
      "= %.1f%%\n",
      l0, lm, l0, lc, 100 * (l0 - lm) / (l0 - lc));
  absl::PrintF("training speed: MAXIS %.2fx the speed of CE\n",
               ce.train_seconds / std::max(maxis.train_seconds, 1e-9));
  // Equal wall time: CE's validation loss after as much training time as the
  // whole MAXIS run took, from CE's curve (steps take the same time once warm).
  const double ce_steps_in_maxis_time =
      maxis.train_seconds / std::max(ce.train_seconds / run.steps(), 1e-12);
  absl::PrintF(
      "equal wall time: in the %.1f s MAXIS trained, CE would have run %.0f steps, reaching "
      "validation loss %.4f (MAXIS: %.4f)\n",
      maxis.train_seconds, ce_steps_in_maxis_time, CurveAt(ce.validation, ce_steps_in_maxis_time),
      lm);
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::trainer::Main();
}
