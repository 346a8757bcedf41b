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
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "trainer/backend/select_backend.h"
#include "trainer/data_flags.h"
#include "trainer/run_config.h"
#include "trainer/run_setup.h"
#include "trainer/trainer.h"

// The flags set the RunConfig fields of their names (ApplyFlags). The
// benchmark's own defaults: shorter runs, validation more often and on more
// batches, no checkpoints but the final one.
namespace {
maximus::trainer::RunConfig BenchDefaults() {
  maximus::trainer::RunConfig c = maximus::trainer::DefaultRunConfig();
  c.set_steps(150);
  c.set_eval_interval(25);
  c.set_eval_batches(8);
  c.set_checkpoint_interval(0);
  return c;
}
const maximus::trainer::RunConfig& Defaults() {
  static const auto* defaults = new maximus::trainer::RunConfig(BenchDefaults());
  return *defaults;
}
}  // namespace

ABSL_FLAG(std::string, preset, Defaults().preset(), "Model preset or config JSON");
ABSL_FLAG(int64_t, steps, Defaults().steps(), "Optimizer steps of each run");
ABSL_FLAG(int64_t, batch, Defaults().batch(), "Sequences per step");
ABSL_FLAG(int64_t, seq_len, Defaults().seq_len(), "Tokens per sequence");
ABSL_FLAG(double, lr, Defaults().lr(), "Peak learning rate");
ABSL_FLAG(int64_t, eval_interval, Defaults().eval_interval(), "Steps between validation losses");
ABSL_FLAG(int64_t, eval_batches, Defaults().eval_batches(), "Validation batches");
ABSL_FLAG(std::string, data, "", "Embedded store (default runs/store) or host:port list");
ABSL_FLAG(std::string, ingest, "",
          "Files or directories to ingest when the store is empty (default: the committed "
          "sample corpus), comma-separated");
ABSL_FLAG(std::string, tokenizer, "", "tokenizer.json (default: Gemma 3)");
ABSL_FLAG(std::string, out_dir, "", "Where both runs write (default runs/bench_quality)");
ABSL_FLAG(uint64_t, seed, Defaults().seed(), "Seed of both runs");
ABSL_FLAG(std::string, backend, "auto", maximus::trainer::kBackendFlagHelp);

namespace maximus::trainer {
namespace {

struct RunResult {
  std::map<int64_t, double> validation;  // step -> exact CE
  double seconds = 0;
  double train_seconds = 0;  // the run without its validation passes
};

absl::StatusOr<RunResult> TrainOnce(data::DataSource* data, TrainerOptions options) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                           MakeBackend(absl::GetFlag(FLAGS_backend)));
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(backend.get(), data, options);
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

int Fail(const absl::Status& status) {
  absl::FPrintF(stderr, "bench_quality: %s\n", status.ToString());
  return 1;
}

int Main() {
  RunConfig run = BenchDefaults();
  if (absl::Status s = ApplyFlags(&run); !s.ok()) return Fail(s);
  // Warmup and progress lines scale with the run.
  run.set_warmup(std::max<int64_t>(1, run.steps() / 10));
  run.set_log_interval(std::max<int64_t>(1, run.steps() / 10));
  if (absl::Status s = ValidateRunConfig(run); !s.ok()) return Fail(s);
  auto tok = LoadTokenizer(run.tokenizer());
  if (!tok.ok()) return Fail(tok.status());
  DataOptions data_options;
  data_options.data = run.data().empty() ? DefaultRunDir("store") : run.data();
  if (!absl::GetFlag(FLAGS_ingest).empty()) {
    for (absl::string_view path : absl::StrSplit(absl::GetFlag(FLAGS_ingest), ',')) {
      data_options.ingest_if_empty.push_back(ResolveUserPath(std::string(path)));
    }
  } else if (absl::StatusOr<std::string> sample = FindSampleCorpus(); sample.ok()) {
    data_options.ingest_if_empty.push_back(*sample);
  }
  absl::StatusOr<rpc::ClientSecurity> data_security = DataClientSecurityFromFlags();
  if (!data_security.ok()) return Fail(data_security.status());
  data_options.security = *std::move(data_security);
  auto data = OpenData(data_options, **tok);
  if (!data.ok()) return Fail(data.status());
  auto model = ModelConfigFromFlag(run.preset());
  if (!model.ok()) return Fail(model.status());
  const std::string out =
      run.out_dir().empty() ? DefaultRunDir("bench_quality") : ResolveUserPath(run.out_dir());
  TrainerOptions base;
  base.run = run;
  base.model = *model;
  base.tokenizer_fingerprint = (*tok)->fingerprint();
  base.tokenizer_vocab_size = (*tok)->vocab_size();
  base.required_vocab_size = (*tok)->model().vocab_size();

  std::map<std::string, RunResult> results;
  for (const std::string loss : {"maxis", "ce"}) {
    TrainerOptions options = base;
    options.run.set_loss(loss == "maxis" ? RunConfig::MAXIS : RunConfig::CE);
    options.run.set_out_dir(out + "/" + loss);
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
               run.steps(), run.batch(), run.seq_len(), run.seed(),
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
  // whole MAXIS run took, from CE's curve (linear between its validation
  // points; steps take the same time once warm).
  const double ce_steps_in_maxis_time =
      maxis.train_seconds / std::max(ce.train_seconds / run.steps(), 1e-12);
  auto after = ce.validation.lower_bound(static_cast<int64_t>(std::ceil(ce_steps_in_maxis_time)));
  double ce_at_maxis_time = ce.validation.rbegin()->second;
  if (after != ce.validation.end() && after != ce.validation.begin()) {
    auto before = std::prev(after);
    const double t = (ce_steps_in_maxis_time - before->first) / (after->first - before->first);
    ce_at_maxis_time = before->second + t * (after->second - before->second);
  }
  absl::PrintF(
      "equal wall time: in the %.1f s MAXIS trained, CE would have run %.0f steps, reaching "
      "validation loss %.4f (MAXIS: %.4f)\n",
      maxis.train_seconds, ce_steps_in_maxis_time, ce_at_maxis_time, lm);
  return 0;
}

}  // namespace
}  // namespace maximus::trainer

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::trainer::Main();
}
