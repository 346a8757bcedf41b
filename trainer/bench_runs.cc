#include "trainer/bench_runs.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <iterator>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "trainer/backend/select_backend.h"
#include "trainer/data_flags.h"
#include "trainer/run_setup.h"

namespace {
const maximus::trainer::RunConfig& Defaults() {
  static const auto* defaults =
      new maximus::trainer::RunConfig(maximus::trainer::BenchRunDefaults());
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
ABSL_FLAG(std::string, out_dir, "", "Where the runs write (default runs/<benchmark>)");
ABSL_FLAG(uint64_t, seed, Defaults().seed(), "Seed of every run");
ABSL_FLAG(std::string, backend, "auto", maximus::trainer::kBackendFlagHelp);

namespace maximus::trainer {

RunConfig BenchRunDefaults() {
  RunConfig c = DefaultRunConfig();
  c.set_steps(150);
  c.set_eval_interval(25);
  c.set_eval_batches(8);
  c.set_checkpoint_interval(0);
  return c;
}

absl::StatusOr<BenchSetup> SetUpBench(const std::string& name) {
  BenchSetup setup;
  setup.run = BenchRunDefaults();
  MAXIMUS_RETURN_IF_ERROR(ApplyFlags(&setup.run));
  // Warmup and progress lines scale with the run.
  setup.run.set_warmup(std::max<int64_t>(1, setup.run.steps() / 10));
  setup.run.set_log_interval(std::max<int64_t>(1, setup.run.steps() / 10));
  MAXIMUS_RETURN_IF_ERROR(ValidateRunConfig(setup.run));
  MAXIMUS_ASSIGN_OR_RETURN(setup.tokenizer, LoadTokenizer(setup.run.tokenizer()));
  DataOptions data_options;
  data_options.data = setup.run.data().empty() ? DefaultRunDir("store") : setup.run.data();
  if (!absl::GetFlag(FLAGS_ingest).empty()) {
    for (absl::string_view path : absl::StrSplit(absl::GetFlag(FLAGS_ingest), ',')) {
      data_options.ingest_if_empty.push_back(ResolveUserPath(std::string(path)));
    }
  } else if (absl::StatusOr<std::string> sample = FindSampleCorpus(); sample.ok()) {
    data_options.ingest_if_empty.push_back(*sample);
  }
  MAXIMUS_ASSIGN_OR_RETURN(data_options.security, DataClientSecurityFromFlags());
  MAXIMUS_ASSIGN_OR_RETURN(setup.data, OpenData(data_options, *setup.tokenizer));
  MAXIMUS_ASSIGN_OR_RETURN(ModelConfig model, ModelConfigFromFlag(setup.run.preset()));
  setup.out_dir =
      setup.run.out_dir().empty() ? DefaultRunDir(name) : ResolveUserPath(setup.run.out_dir());
  setup.base.run = setup.run;
  setup.base.model = std::move(model);
  setup.base.tokenizer_fingerprint = setup.tokenizer->fingerprint();
  setup.base.tokenizer_vocab_size = setup.tokenizer->vocab_size();
  setup.base.required_vocab_size = setup.tokenizer->model().vocab_size();
  return setup;
}

absl::StatusOr<BenchRun> TrainBenchRun(data::DataSource* data, const TrainerOptions& options,
                                       const std::function<absl::Status(Trainer&)>& after) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<Backend> backend,
                           MakeBackend(absl::GetFlag(FLAGS_backend)));
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer,
                           Trainer::Create(backend.get(), data, options));
  const auto start = std::chrono::steady_clock::now();
  MAXIMUS_RETURN_IF_ERROR(trainer->Run());
  BenchRun result;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  int64_t next = 0;
  for (const MetricPoint& p : trainer->MetricsSince(0, &next)) {
    if (p.tag == "val/loss") result.validation[p.step] = p.value;
  }
  result.train_seconds = result.seconds - trainer->status().validation_seconds;
  if (after) MAXIMUS_RETURN_IF_ERROR(after(*trainer));
  return result;
}

double CurveAt(const std::map<int64_t, double>& curve, double step) {
  if (curve.empty()) return 0;
  auto after = curve.lower_bound(static_cast<int64_t>(std::ceil(step)));
  if (after == curve.end()) return curve.rbegin()->second;
  if (after == curve.begin()) return after->second;
  auto before = std::prev(after);
  const double t = (step - before->first) / (after->first - before->first);
  return before->second + t * (after->second - before->second);
}

}  // namespace maximus::trainer
