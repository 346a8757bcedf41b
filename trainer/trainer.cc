#include "trainer/trainer.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "trainer/io/loss_plot.h"

namespace maximus::trainer {
namespace {

constexpr size_t kMaxKeptPoints = 100000;

std::string FormatDuration(double seconds) {
  if (!(seconds >= 0) || !std::isfinite(seconds)) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s / 60) % 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

}  // namespace

Trainer::Trainer(Backend* backend, data::DataSource* data, const TrainerOptions& options)
    : backend_(backend), data_(data), options_(options) {}

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(Backend* backend, data::DataSource* data,
                                                         const TrainerOptions& options) {
  std::unique_ptr<Trainer> trainer(new Trainer(backend, data, options));
  if (absl::Status s = trainer->Setup(); !s.ok()) {
    trainer->SetState(TrainerStatus::State::kFailed, std::string(s.message()));
    return s;
  }
  return trainer;
}

absl::Status Trainer::Setup() {
  const TrainerOptions& o = options_;
  const RunConfig& run = o.run;
  MAXIMUS_RETURN_IF_ERROR(ValidateRunConfig(run));
  MAXIMUS_RETURN_IF_ERROR(ApplyAttentionFlags(run, &options_.model));
  schedule_ = ScheduleOf(run);
  adamw_ = AdamWOf(run);
  loss_ = LossOf(run);
  MAXIMUS_RETURN_IF_ERROR(ValidateLrSchedule(schedule_));
  MAXIMUS_RETURN_IF_ERROR(ValidateAdamWConfig(adamw_));
  if (loss_.kind == LossKind::kMaxis) {
    kernels::LinearHeadShape shape{run.batch() * run.seq_len(), o.model.hidden, o.model.vocab_size};
    MAXIMUS_RETURN_IF_ERROR(kernels::ValidateMaxisConfig(shape, loss_.maxis));
  }

  if (run.out_dir().empty()) return absl::InvalidArgumentError("--out_dir is required");
  // The data: same tokenizer, and ids that fit the model's vocabulary.
  const data::ShardList& store = data_->info();
  if (!o.tokenizer_fingerprint.empty() && store.tokenizer().sha256() != o.tokenizer_fingerprint) {
    return absl::FailedPreconditionError(absl::StrCat("the data was tokenized with tokenizer ",
                                                      store.tokenizer().sha256(), ", not ",
                                                      o.tokenizer_fingerprint));
  }
  if (o.required_vocab_size > o.model.vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the tokenizer's vocabulary has ", o.required_vocab_size,
                     " tokens, the model's only ", o.model.vocab_size));
  }
  comm_ = o.data_parallel.communicator;
  if (comm_ == nullptr) {
    local_ = dist::MakeLocalCommunicator();
    comm_ = local_.get();
  }
  rank_ = comm_->rank();
  world_ = comm_->world_size();
  MAXIMUS_RETURN_IF_ERROR(ValidateBatchFitsMemory(run, o.model, backend_->MemoryBytes(),
                                                  sharded() ? world_ : 1));
  absl::StatusOr<std::unique_ptr<Model>> model =
      Model::Create(backend_, o.model, sharded() ? world_ : 1, sharded() ? rank_ : 0);
  if (!model.ok()) return model.status();
  model_ = *std::move(model);
  model_->SetActivationCheckpointing(run.activation_checkpointing());
  ParameterArena& arena = model_->arena();
  for (int r = 0; r < world_; ++r) {
    const UpdateRange shard = ShardOf(arena.size(), world_, r);
    shard_sizes_.push_back(shard.end - shard.begin);
  }
  if (!sharded()) {
    // The AdamW moments live in the model's arena; per-parameter views for
    // checkpoints.
    m_ = SegmentViews(arena, arena.m().data());
    v_ = SegmentViews(arena, arena.v().data());
  }
  reducer_ = std::make_unique<dist::GradientReducer>(comm_, backend_, &arena, o.model.vocab_size,
                                                     o.model.hidden, o.data_parallel.reducer);
  checkpoint_root_ = run.out_dir() + "/checkpoints";
  if (rank_ == 0) {
    std::error_code ec;
    std::filesystem::create_directories(checkpoint_root_, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("creating ", checkpoint_root_, ": ", ec.message()));
    }
  }

  data::StreamBatchesRequest request;
  request.mutable_selection()->set_split(data::SPLIT_TRAIN);
  request.mutable_selection()->set_seed(run.seed());
  request.mutable_selection()->set_rank(0);
  request.mutable_selection()->set_world_size(1);
  request.mutable_selection()->set_validation_fraction(run.validation_fraction());
  // In range: ValidateRunConfig bounds both by the data service's limits.
  request.set_seq_len(static_cast<uint32_t>(run.seq_len()));
  request.set_batch_size(static_cast<uint32_t>(run.batch()));
  if (!run.resume().empty()) {
    absl::StatusOr<std::string> dir = ResolveCheckpointDir(run.resume());
    if (!dir.ok()) return dir.status();
    ModelConfig saved;
    absl::StatusOr<CheckpointState> state = ReadCheckpointState(*dir, &saved);
    if (!state.ok()) return state.status();
    if (state->tokenizer_fingerprint != o.tokenizer_fingerprint) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", *dir, " was trained with tokenizer ",
                       state->tokenizer_fingerprint, ", this run uses ", o.tokenizer_fingerprint));
    }
    if (saved.attention != o.model.attention ||
        saved.standard_attention_layers != o.model.standard_attention_layers) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", *dir, " has ", AttentionDescription(saved),
                       ", this run asks for ", AttentionDescription(o.model),
                       ": --attention and --standard_attention_layers must match "
                       "the checkpoint's"));
    }
    if (ModelConfigToJson(saved) != ModelConfigToJson(o.model)) {
      return absl::FailedPreconditionError(
          absl::StrCat("checkpoint ", *dir, " has another model config:\n",
                       ModelConfigToJson(saved), "\nthis run:\n", ModelConfigToJson(o.model)));
    }
    if (state->format_version < 2) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", *dir, " has format version ", state->format_version,
          ", from before run configs were recorded: it loads for generation and scoring, but "
          "cannot be resumed"));
    }
    absl::StatusOr<RunConfig> saved_run = RunConfigFromJson(state->training.dump());
    if (!saved_run.ok()) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", *dir, ": run_config: ", saved_run.status().message()));
    }
    // Another world size resumes at the same data position when a step
    // still takes as many micro-batches (ranks x accumulation).
    RunConfig compared = run;
    if (run.accumulation() * world_ == saved_run->accumulation() * state->world_size) {
      compared.set_accumulation(saved_run->accumulation());
    } else if (state->world_size != world_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "checkpoint ", *dir, " was trained by ", state->world_size, " ranks with accumulation ",
          saved_run->accumulation(), " (", state->world_size * saved_run->accumulation(),
          " micro-batches a step); with ", world_, " ranks set --accumulation so that ranks x "
          "accumulation is the same"));
    }
    const std::vector<std::string> differences = ResumeMismatches(*saved_run, compared);
    if (!differences.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("checkpoint ", *dir,
                                                        " was trained with other settings:\n  ",
                                                        absl::StrJoin(differences, "\n  ")));
    }
    if (sharded()) {
      // The checkpoint holds all moments: load them whole, keep this rank's shard.
      std::unique_ptr<Buffer> full_m = backend_->Allocate(arena.size());
      std::unique_ptr<Buffer> full_v = backend_->Allocate(arena.size());
      std::vector<std::unique_ptr<Buffer>> m = SegmentViews(arena, full_m->data());
      std::vector<std::unique_ptr<Buffer>> v = SegmentViews(arena, full_v->data());
      MAXIMUS_RETURN_IF_ERROR(LoadCheckpointTensors(*dir, *model_, &m, &v));
      const int64_t begin = arena.moment_begin(), size = arena.m().size();
      backend_->Copy(full_m->data() + begin, size, arena.m().data());
      backend_->Copy(full_v->data() + begin, size, arena.v().data());
      MAXIMUS_RETURN_IF_ERROR(backend_->Synchronize());
    } else {
      MAXIMUS_RETURN_IF_ERROR(LoadCheckpointTensors(*dir, *model_, &m_, &v_));
    }
    start_step_ = state->step;
    tokens_seen_ = state->tokens_seen;
    cursor_ = state->data_cursor;
    *request.mutable_resume() = cursor_;
  } else {
    model_->Initialize(run.seed());
  }
  // Every rank starts from rank 0's parameters (the same already, by seed or
  // checkpoint; this makes it so whatever the backends).
  MAXIMUS_RETURN_IF_ERROR(comm_->Broadcast(arena.values().data(), arena.size(), 0));
  absl::StatusOr<std::unique_ptr<data::BatchStream>> train = data_->OpenStream(request);
  if (!train.ok()) return train.status();
  train_ = *std::move(train);

  // A fixed validation set: the first eval_batches batches of the split.
  data::StreamBatchesRequest valid = request;
  valid.clear_resume();
  valid.mutable_selection()->set_split(data::SPLIT_VALIDATION);
  valid.set_num_epochs(1);
  absl::StatusOr<std::unique_ptr<data::BatchStream>> stream = data_->OpenStream(valid);
  if (!stream.ok()) return stream.status();
  data::PackedBatch batch;
  for (int64_t i = 0; i < run.eval_batches(); ++i) {
    absl::StatusOr<bool> more = (*stream)->Next(&batch);
    if (!more.ok()) return more.status();
    if (!*more) break;
    MAXIMUS_RETURN_IF_ERROR(CheckPackedBatch(batch, run));
    validation_.push_back(MakeTokenBatch(data::BatchTokens(batch), data::BatchLossMask(batch),
                                         batch.rows(), batch.row_length()));
  }
  if (validation_.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the validation split is empty (validation_fraction ", run.validation_fraction(),
        "): ingest more documents or raise --validation_fraction"));
  }
  if (rank_ == 0) {
    absl::StatusOr<std::unique_ptr<MetricsWriter>> metrics =
        MetricsWriter::Open(run.out_dir(), run.resume().empty() ? -1 : start_step_);
    if (!metrics.ok()) return metrics.status();
    metrics_ = *std::move(metrics);
  }
  absl::MutexLock lock(&mu_);
  status_.step = start_step_;
  status_.total_steps = run.steps();
  status_.tokens_seen = tokens_seen_;
  return absl::OkStatus();
}

absl::StatusOr<double> Trainer::ValidationLoss() {
  LossSettings ce;
  ce.kind = LossKind::kCrossEntropy;
  // The ranks share the batches and sum their losses.
  double totals[2] = {0, 0};  // loss sum, tokens
  for (size_t i = rank_; i < validation_.size(); i += world_) {
    absl::StatusOr<LossOutput> out = model_->Step(validation_[i], ce, /*backward=*/false);
    if (!out.ok()) return out.status();
    totals[0] += out->loss * out->counted_tokens;
    totals[1] += out->counted_tokens;
  }
  MAXIMUS_RETURN_IF_ERROR(comm_->AllReduceSumHost(absl::MakeSpan(totals)));
  return totals[1] > 0 ? totals[0] / totals[1] : 0.0;
}

absl::Status Trainer::TrainStep(int64_t step) {
  const RunConfig& o = options_.run;
  model_->ZeroGrads();
  reducer_->BeginStep();
  double loss = 0, main_loss = 0;
  for (int64_t micro = 0; micro < o.accumulation(); ++micro) {
    // The step's next `world` batches: this rank trains on number `rank`.
    TokenBatch batch;
    for (int r = 0; r < world_; ++r) {
      data::PackedBatch packed;
      absl::StatusOr<bool> more = train_->Next(&packed);
      if (!more.ok()) return more.status();
      if (!*more) return absl::OutOfRangeError("the training stream ended");
      MAXIMUS_RETURN_IF_ERROR(CheckPackedBatch(packed, o));
      cursor_ = packed.next();
      tokens_seen_ += static_cast<int64_t>(packed.rows()) * (packed.row_length() - 1);
      if (r == rank_) {
        batch = MakeTokenBatch(data::BatchTokens(packed), data::BatchLossMask(packed),
                               packed.rows(), packed.row_length());
      }
    }
    // The last micro-batch's backward starts the reduction of finished
    // gradients as it goes.
    const bool last = micro + 1 == o.accumulation();
    if (last && world_ > 1) {
      model_->SetGradientsReadyHook(
          [this](int64_t offset) { return reducer_->GradientsReadyFrom(offset); });
    }
    absl::StatusOr<LossOutput> out = model_->Step(batch, loss_, /*backward=*/true);
    model_->SetGradientsReadyHook(nullptr);
    if (!out.ok()) return out.status();
    reducer_->AddEmbeddingRows(batch.inputs);
    if (out->embedding_grad_dense) {
      reducer_->MarkEmbeddingDense();
    } else {
      reducer_->AddEmbeddingRows(out->embedding_grad_rows);
    }
    loss += out->loss / o.accumulation();
    main_loss += out->main_loss / o.accumulation();
  }
  MAXIMUS_RETURN_IF_ERROR(reducer_->FinishStep());
  // The mean loss over ranks, and what the ranks want next (a stop or a
  // checkpoint asked of any rank applies to all, after this same step).
  bool checkpoint_requested;
  {
    absl::MutexLock lock(&mu_);
    checkpoint_requested = checkpoint_requested_;
    checkpoint_requested_ = false;
  }
  double shared[4] = {loss, main_loss, stop_ ? 1.0 : 0.0, checkpoint_requested ? 1.0 : 0.0};
  MAXIMUS_RETURN_IF_ERROR(comm_->AllReduceSumHost(absl::MakeSpan(shared)));
  loss = shared[0] / world_;
  main_loss = shared[1] / world_;
  stop_agreed_ = shared[2] > 0;
  checkpoint_agreed_ = shared[3] > 0;
  if (!std::isfinite(loss)) {
    return absl::InternalError(absl::StrCat("the loss is ", loss, " at step ", step,
                                            "; lower --lr or check the data"));
  }
  OptimizerStep update;
  update.adamw = adamw_;
  update.step = step;
  update.lr = LearningRate(schedule_, step);
  update.grad_scale = 1.0f / static_cast<float>(o.accumulation() * world_);
  update.clip_norm = o.clip();
  ParameterArena& arena = model_->arena();
  if (sharded()) {
    update.update_begin = arena.moment_begin();
    update.update_end = arena.moment_end();
  }
  MAXIMUS_ASSIGN_OR_RETURN(const double norm, backend_->OptimizerUpdate(update, arena));
  if (!std::isfinite(norm)) {
    return absl::InternalError(absl::StrCat("the gradient norm is ", norm, " at step ", step,
                                            "; lower --lr or check the data"));
  }
  if (sharded()) {
    MAXIMUS_RETURN_IF_ERROR(comm_->AllGatherInPlace(arena.values().data(), shard_sizes_));
  }
  const float lr = update.lr;
  step_losses_.push_back(loss);
  std::vector<std::pair<std::string, double>> points = {{"train/loss", loss}};
  if (loss_.kind == LossKind::kMaxis) points.push_back({"train/maxis_main", main_loss});
  points.push_back({"train/grad_norm", norm});
  if (world_ > 1) {
    const dist::ReductionStats& reduced = reducer_->last_step();
    points.push_back({"dist/dense_floats_reduced", static_cast<double>(reduced.dense_elements)});
    if (reduced.embedding_sparse) {
      points.push_back({"dist/embedding_rows_reduced", static_cast<double>(reduced.embedding_rows)});
    }
  }
  points.push_back({"train/lr", lr});
  Publish(step, points, [&](TrainerStatus& status) {
    status.step = step;
    status.tokens_seen = tokens_seen_;
    status.last_loss = loss;
    status.loss_ema = status.loss_ema == 0 ? loss : 0.95 * status.loss_ema + 0.05 * loss;
    status.learning_rate = lr;
  });
  return absl::OkStatus();
}

absl::Status Trainer::GatherMoments(std::vector<std::unique_ptr<Buffer>>* m,
                                    std::vector<std::unique_ptr<Buffer>>* v,
                                    std::vector<std::unique_ptr<Buffer>>* scratch) {
  ParameterArena& arena = model_->arena();
  for (Buffer* moments : {&arena.m(), &arena.v()}) {
    std::unique_ptr<Buffer> full = backend_->Allocate(arena.size());
    backend_->Copy(moments->data(), moments->size(), full->data() + arena.moment_begin());
    MAXIMUS_RETURN_IF_ERROR(comm_->AllGatherInPlace(full->data(), shard_sizes_));
    *(moments == &arena.m() ? m : v) = SegmentViews(arena, full->data());
    scratch->push_back(std::move(full));
  }
  return absl::OkStatus();
}

absl::Status Trainer::CheckReplicas() {
  if (world_ == 1) return absl::OkStatus();
  ParameterArena& arena = model_->arena();
  std::vector<float> values(arena.size());
  backend_->CopyToHost(arena.values().data(), arena.size(), values.data());
  MAXIMUS_RETURN_IF_ERROR(backend_->Synchronize());
  // FNV-1a over the bits, a 32-bit word at a time (the same on every rank,
  // unlike absl's per-process seeded hash).
  uint64_t hash = 1469598103934665603ull;
  for (const float value : values) {
    uint32_t bits;
    std::memcpy(&bits, &value, sizeof(bits));
    hash = (hash ^ bits) * 1099511628211ull;
  }
  MAXIMUS_ASSIGN_OR_RETURN(const std::vector<uint64_t> hashes, comm_->AllGatherHost(hash));
  for (int r = 1; r < world_; ++r) {
    if (hashes[r] != hashes[0]) {
      return absl::DataLossError(absl::StrCat(
          "the parameters of rank ", r, " differ from rank 0's: the ranks diverged (a backend "
          "that is not deterministic, or ranks on different builds)"));
    }
  }
  return absl::OkStatus();
}

absl::Status Trainer::Save(int64_t step) {
  // Every rank takes part (the moments' gather, the replica check); rank 0
  // writes.
  std::vector<std::unique_ptr<Buffer>> gathered_m, gathered_v, scratch;
  if (sharded()) MAXIMUS_RETURN_IF_ERROR(GatherMoments(&gathered_m, &gathered_v, &scratch));
  const std::vector<std::unique_ptr<Buffer>>& m = sharded() ? gathered_m : m_;
  const std::vector<std::unique_ptr<Buffer>>& v = sharded() ? gathered_v : v_;
  MAXIMUS_RETURN_IF_ERROR(CheckReplicas());
  const std::string dir = absl::StrFormat("%s/step-%08d", checkpoint_root_, step);
  if (rank_ != 0) {
    absl::MutexLock lock(&mu_);
    status_.last_checkpoint = dir;
    ++checkpoints_done_;
    changed_.SignalAll();
    return absl::OkStatus();
  }
  CheckpointState state;
  state.step = step;
  state.tokens_seen = tokens_seen_;
  state.tokenizer_fingerprint = options_.tokenizer_fingerprint;
  state.tokenizer_vocab_size = options_.tokenizer_vocab_size;
  state.tokenizer_path = options_.tokenizer_path;
  state.training = nlohmann::json::parse(RunConfigToJson(options_.run));
  state.data_cursor = cursor_;
  state.seed = options_.run.seed();
  state.world_size = world_;
  MAXIMUS_RETURN_IF_ERROR(SaveCheckpoint(dir, *model_, m, v, state));
  if (options_.run.keep_checkpoints() > 0) {
    // Never pruned: the checkpoint `latest` names (the one just written) and
    // the one this run resumed from, whose name is its step. A run resumed
    // from an older checkpoint saves below newer ones of the abandoned run;
    // pruning by name alone would delete what `latest` names.
    std::set<std::string> protected_names = {std::filesystem::path(dir).filename().string()};
    if (absl::StatusOr<std::string> latest = ResolveCheckpointDir(checkpoint_root_); latest.ok()) {
      protected_names.insert(std::filesystem::path(*latest).filename().string());
    }
    if (!options_.run.resume().empty()) {
      protected_names.insert(absl::StrFormat("step-%08d", start_step_));
    }
    // Names sort by step (zero-padded); the newest are kept.
    std::vector<std::string> saved;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(checkpoint_root_, ec)) {
      const std::string name = entry.path().filename().string();
      if (entry.is_directory() && name.rfind("step-", 0) == 0 &&
          name.find('.') == std::string::npos) {
        saved.push_back(name);
      }
    }
    std::sort(saved.begin(), saved.end());
    for (size_t i = 0; i + static_cast<size_t>(options_.run.keep_checkpoints()) < saved.size();
         ++i) {
      if (protected_names.count(saved[i])) continue;
      std::filesystem::remove_all(checkpoint_root_ + "/" + saved[i], ec);
    }
  }
  absl::MutexLock lock(&mu_);
  status_.last_checkpoint = dir;
  ++checkpoints_done_;
  changed_.SignalAll();
  return absl::OkStatus();
}

absl::Status Trainer::Run() {
  const RunConfig& o = options_.run;
  SetState(TrainerStatus::State::kRunning);
  const auto start = std::chrono::steady_clock::now();
  const int64_t start_tokens = tokens_seen_;
  absl::Status status;
  int64_t step = start_step_;
  auto evaluate = [&](int64_t at) -> absl::Status {
    const auto eval_start = std::chrono::steady_clock::now();
    absl::StatusOr<double> val = ValidationLoss();
    if (!val.ok()) return val.status();
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - eval_start).count();
    Publish(at, {{"val/loss", *val}}, [&](TrainerStatus& status) {
      status.validation_loss = *val;
      status.validation_seconds += seconds;
    });
    return absl::OkStatus();
  };
  if (start_step_ == 0 && o.eval_interval() > 0) status = evaluate(0);
  while (status.ok() && step < o.steps() && !stop_agreed_ && !(world_ == 1 && stop_) &&
         (o.stop_at_step() == 0 || step < o.stop_at_step())) {
    ++step;
    status = TrainStep(step);
    if (!status.ok()) break;
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const double rate = (tokens_seen_ - start_tokens) / std::max(seconds, 1e-9);
    const double eta = seconds / (step - start_step_) * (o.steps() - step);
    Publish(step, {{"train/tokens_per_second", rate}}, [&](TrainerStatus& status) {
      status.tokens_per_second = rate;
      status.eta_seconds = eta;
    });
    if ((o.eval_interval() > 0 && step % o.eval_interval() == 0) || step == o.steps()) {
      status = evaluate(step);
      if (!status.ok()) break;
    }
    if (metrics_ != nullptr) metrics_->Flush().IgnoreError();
    if (!options_.quiet && (step % o.log_interval() == 0 || step == o.steps())) {
      const TrainerStatus now = this->status();
      absl::FPrintF(
          stderr, "step %6d/%d  loss %.4f (ema %.4f)  val %s  lr %.2e  %.0f tok/s  eta %s\n", step,
          o.steps(), now.last_loss, now.loss_ema,
          now.validation_loss < 0 ? std::string("-") : absl::StrFormat("%.4f", now.validation_loss),
          now.learning_rate, rate, FormatDuration(eta));
    }
    const bool save = (o.checkpoint_interval() > 0 && step % o.checkpoint_interval() == 0) ||
                      checkpoint_agreed_;
    if (save) status = Save(step);
  }
  if (status.ok() && step > start_step_) {
    SetState(TrainerStatus::State::kStopping);
    status = Save(step);
  }
  if (metrics_ != nullptr) {
    WriteLossPlot(o.out_dir() + "/loss.svg", metrics_->series(), {"train/loss", "val/loss"},
                  absl::StrCat("Maximus ", options_.model.name, ", loss ", LossFlagValue(o.loss())))
        .IgnoreError();
    metrics_->Close().IgnoreError();
  }
  SetState(status.ok() ? TrainerStatus::State::kFinished : TrainerStatus::State::kFailed,
           std::string(status.message()));
  return status;
}

void Trainer::Publish(int64_t step, const std::vector<std::pair<std::string, double>>& points,
                      const std::function<void(TrainerStatus&)>& update) {
  if (metrics_ != nullptr) {
    for (const auto& [tag, value] : points) metrics_->AddScalar(step, tag, value).IgnoreError();
  }
  absl::MutexLock lock(&mu_);
  if (update) update(status_);
  for (const auto& [tag, value] : points) {
    points_.push_back({step, tag, value});
    if (points_.size() > kMaxKeptPoints) {
      points_.pop_front();
      ++first_point_;
    }
  }
  changed_.SignalAll();
}

void Trainer::SetState(TrainerStatus::State state, const std::string& error) {
  absl::MutexLock lock(&mu_);
  status_.state = state;
  if (!error.empty()) status_.error = error;
  changed_.SignalAll();
}

TrainerStatus Trainer::status() const {
  absl::MutexLock lock(&mu_);
  return status_;
}

std::vector<MetricPoint> Trainer::MetricsSince(int64_t from, int64_t* next) const {
  absl::MutexLock lock(&mu_);
  std::vector<MetricPoint> out;
  for (int64_t i = std::max(from, first_point_);
       i < first_point_ + static_cast<int64_t>(points_.size()); ++i) {
    out.push_back(points_[i - first_point_]);
  }
  *next = first_point_ + static_cast<int64_t>(points_.size());
  return out;
}

bool Trainer::WaitForMetrics(int64_t from, absl::Duration timeout) const {
  absl::MutexLock lock(&mu_);
  const absl::Time deadline = absl::Now() + timeout;
  while (first_point_ + static_cast<int64_t>(points_.size()) <= from &&
         status_.state != TrainerStatus::State::kFinished &&
         status_.state != TrainerStatus::State::kFailed) {
    if (changed_.WaitWithDeadline(&mu_, deadline)) return false;
  }
  return first_point_ + static_cast<int64_t>(points_.size()) > from;
}

absl::StatusOr<std::string> Trainer::RequestCheckpoint(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  if (status_.state != TrainerStatus::State::kRunning) {
    return absl::FailedPreconditionError("the trainer is not running");
  }
  const int64_t before = checkpoints_done_;
  checkpoint_requested_ = true;
  const absl::Time deadline = absl::Now() + timeout;
  while (checkpoints_done_ == before) {
    if (status_.state == TrainerStatus::State::kFailed) {
      return absl::AbortedError(absl::StrCat("the run failed: ", status_.error));
    }
    if (status_.state == TrainerStatus::State::kFinished) {
      return absl::FailedPreconditionError("the run ended before the checkpoint was taken");
    }
    if (changed_.WaitWithDeadline(&mu_, deadline)) {
      return absl::DeadlineExceededError("no checkpoint within the deadline");
    }
  }
  return status_.last_checkpoint;
}

void Trainer::RequestStop() {
  stop_ = true;
  absl::MutexLock lock(&mu_);
  if (status_.state == TrainerStatus::State::kRunning)
    status_.state = TrainerStatus::State::kStopping;
  changed_.SignalAll();
}

}  // namespace maximus::trainer
