// The training loop: data from a DataSource (embedded store or DataServices),
// the model on a backend, MAXIS or exact cross-entropy, AdamW with the
// warmup-stable-decay schedule, gradient clipping and accumulation, exact
// cross-entropy validation, metrics, checkpoints and exact resume.
//
// Thread-safe observers (status, metrics, checkpoint and stop requests) let
// TrainerService watch and steer a running loop.

#ifndef MAXIMUS_TRAINER_TRAINER_H_
#define MAXIMUS_TRAINER_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "data_service/data_source.h"
#include "trainer/backend/backend.h"
#include "trainer/dist/communicator.h"
#include "trainer/dist/gradient_reducer.h"
#include "trainer/io/checkpoint.h"
#include "trainer/io/metrics_writer.h"
#include "trainer/model/model.h"
#include "trainer/optim/adamw.h"
#include "trainer/optim/lr_schedule.h"
#include "trainer/run_config.h"

namespace maximus::trainer {

// Data-parallel training: this process is one rank of communicator's world.
// Every rank streams the same global batches (the data's world-size-1
// order) and trains on its own micro-batches of each step: micro-batch m of
// rank r is batch m * world + r of the step. A run of W ranks with batch B
// therefore sees the batches of one rank with accumulation W (and, for exact
// cross-entropy, of one rank with batch W * B), and its data position does
// not depend on W: a run resumes exactly with another world size.
struct DataParallelOptions {
  dist::Communicator* communicator = nullptr;  // null: a single process
  // ZeRO stage 1: each rank keeps the AdamW moments of its shard of the
  // parameters, updates that shard and all-gathers the parameters.
  bool shard_optimizer_state = false;
  dist::GradientReducerOptions reducer;
};

struct TrainerOptions {
  // What to train and how: the flags' message (proto/run_config.proto).
  RunConfig run = DefaultRunConfig();
  // The model's shape, resolved from run.preset.
  ModelConfig model;
  // The tokenizer the data was made with.
  std::string tokenizer_fingerprint;
  int64_t tokenizer_vocab_size = 0;
  std::string tokenizer_path;  // Copied into checkpoints ("" : not copied).
  // Ids the model must be able to embed: the tokenizer's BPE vocabulary (its
  // trailing added tokens, such as Gemma 3's <image_soft_token> = 262,144,
  // never come from text; a batch holding one fails with the id named).
  int64_t required_vocab_size = 0;
  bool quiet = false;  // No progress lines.
  DataParallelOptions data_parallel;
};

struct TrainerStatus {
  enum class State { kStarting, kRunning, kStopping, kFinished, kFailed };
  State state = State::kStarting;
  int64_t step = 0;
  int64_t total_steps = 0;
  int64_t tokens_seen = 0;
  double loss_ema = 0;
  double last_loss = 0;
  double validation_loss = -1;  // Exact CE; -1 until measured.
  double tokens_per_second = 0;
  double eta_seconds = 0;
  double learning_rate = 0;
  double validation_seconds = 0;  // Spent computing validation losses.
  std::string last_checkpoint;
  std::string error;
};

struct MetricPoint {
  int64_t step = 0;
  std::string tag;
  double value = 0;
};

class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(Backend* backend, data::DataSource* data,
                                                         const TrainerOptions& options);

  // Trains to options.steps (or until Stop), saving a checkpoint at the end.
  absl::Status Run();

  // Exact cross-entropy on the fixed validation batches.
  absl::StatusOr<double> ValidationLoss();

  // Observers, callable from any thread while Run works.
  TrainerStatus status() const;
  // Metric points with sequence number >= `from` (and the next number).
  std::vector<MetricPoint> MetricsSince(int64_t from, int64_t* next) const;
  // Blocks until a metric point >= `from` exists, the run ends or `timeout`.
  bool WaitForMetrics(int64_t from, absl::Duration timeout) const;
  // Saves a checkpoint after the current step; returns its directory.
  absl::StatusOr<std::string> RequestCheckpoint(absl::Duration timeout);
  // Stops after the current step (saving a checkpoint).
  void RequestStop();

  Model& model() { return *model_; }
  const TrainerOptions& options() const { return options_; }
  const std::vector<double>& step_losses() const { return step_losses_; }
  const std::string& checkpoint_root() const { return checkpoint_root_; }

 private:
  Trainer(Backend* backend, data::DataSource* data, const TrainerOptions& options);
  absl::Status Setup();
  absl::Status TrainStep(int64_t step);
  absl::Status Save(int64_t step);
  // Publishes the metric points of `step` and applies `update` to the status
  // in one critical section: whoever has seen a step's points sees a status
  // that includes that step.
  void Publish(int64_t step, const std::vector<std::pair<std::string, double>>& points,
               const std::function<void(TrainerStatus&)>& update = nullptr);
  void SetState(TrainerStatus::State state, const std::string& error = "");
  bool sharded() const { return options_.data_parallel.shard_optimizer_state && world_ > 1; }
  // The full AdamW moments of a sharded optimizer, all ranks' shards gathered
  // into `scratch`, as per-parameter views, for a checkpoint.
  absl::Status GatherMoments(std::vector<std::unique_ptr<Buffer>>* m,
                             std::vector<std::unique_ptr<Buffer>>* v,
                             std::vector<std::unique_ptr<Buffer>>* scratch);
  // Fails unless every rank holds the same parameters (checked at saves).
  absl::Status CheckReplicas();

  Backend* backend_;
  data::DataSource* data_;
  TrainerOptions options_;
  // What the loop's parts take from options_.run.
  LrSchedule schedule_;
  AdamWConfig adamw_;
  LossSettings loss_;
  std::unique_ptr<Model> model_;
  std::vector<std::unique_ptr<Buffer>> m_, v_;  // Per-parameter views (unsharded)
  std::unique_ptr<dist::Communicator> local_;   // When no communicator was given.
  dist::Communicator* comm_ = nullptr;
  int rank_ = 0;
  int world_ = 1;
  std::unique_ptr<dist::GradientReducer> reducer_;
  std::vector<int64_t> shard_sizes_;  // Elements of each rank's optimizer shard.
  // What the ranks agreed on at the end of the last step.
  bool stop_agreed_ = false;
  bool checkpoint_agreed_ = false;
  std::unique_ptr<data::BatchStream> train_;
  data::StreamCursor cursor_;
  std::vector<TokenBatch> validation_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::string checkpoint_root_;
  int64_t start_step_ = 0;
  int64_t tokens_seen_ = 0;
  std::vector<double> step_losses_;  // The optimised loss of each step of this process.

  mutable absl::Mutex mu_;
  mutable absl::CondVar changed_;
  TrainerStatus status_ ABSL_GUARDED_BY(mu_);
  std::deque<MetricPoint> points_ ABSL_GUARDED_BY(mu_);
  int64_t first_point_ ABSL_GUARDED_BY(mu_) = 0;
  bool checkpoint_requested_ ABSL_GUARDED_BY(mu_) = false;
  int64_t checkpoints_done_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<bool> stop_{false};
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_TRAINER_H_
