// What the training-quality benchmarks (bench_quality, bench_attention_quality)
// share: their common flags (preset, steps, batch, seq_len, lr, eval_*, data,
// ingest, tokenizer, out_dir, seed, backend: RunConfig fields by name, read by
// ApplyFlags), the data and model set up once for several runs, one run
// trained and timed, and a validation curve read between its points.

#ifndef MAXIMUS_TRAINER_BENCH_RUNS_H_
#define MAXIMUS_TRAINER_BENCH_RUNS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "data_service/data_source.h"
#include "tokenizer/tokenizer.h"
#include "trainer/run_config.h"
#include "trainer/trainer.h"

ABSL_DECLARE_FLAG(std::string, ingest);
ABSL_DECLARE_FLAG(std::string, backend);

namespace maximus::trainer {

// The benchmarks' RunConfig defaults: shorter runs than a training run,
// validation more often and on more batches, no checkpoints but the final one.
RunConfig BenchRunDefaults();

// The tokenizer, the data (the store ingested from --ingest, or the committed
// sample, when empty) and the options every run starts from, with out_dir
// defaulting to runs/<name>.
struct BenchSetup {
  RunConfig run;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer;
  std::unique_ptr<data::DataSource> data;
  TrainerOptions base;
  std::string out_dir;
};
absl::StatusOr<BenchSetup> SetUpBench(const std::string& name);

struct BenchRun {
  std::map<int64_t, double> validation;  // step -> exact-CE validation loss
  double seconds = 0;
  double train_seconds = 0;  // the run less its validation passes
};

// Trains one run on a backend of --backend; `after` (optional) sees the
// trained model before the backend goes.
absl::StatusOr<BenchRun> TrainBenchRun(data::DataSource* data, const TrainerOptions& options,
                                       const std::function<absl::Status(Trainer&)>& after = {});

// The curve's value at a fractional step: linear between its points, its
// last value past the end.
double CurveAt(const std::map<int64_t, double>& curve, double step);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BENCH_RUNS_H_
