#include "trainer/trainer_service.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "base/status_macros.h"
#include "rpc/grpc_status.h"
#include "trainer/io/checkpoint.h"

namespace maximus::trainer {

using ::maximus::rpc::ToGrpcStatus;

namespace {

grpc::Status ShuttingDown() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
}

grpc::Status Cancelled() { return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"); }

bool Ended(TrainerStatus::State state) {
  return state == TrainerStatus::State::kFinished || state == TrainerStatus::State::kFailed;
}

TrainingStatus::State StateToProto(TrainerStatus::State state) {
  switch (state) {
    case TrainerStatus::State::kStarting:
      return TrainingStatus::STARTING;
    case TrainerStatus::State::kRunning:
      return TrainingStatus::RUNNING;
    case TrainerStatus::State::kStopping:
      return TrainingStatus::STOPPING;
    case TrainerStatus::State::kFinished:
      return TrainingStatus::FINISHED;
    case TrainerStatus::State::kFailed:
      return TrainingStatus::FAILED;
  }
  return TrainingStatus::STATE_UNSPECIFIED;
}

// The next sequence number the trainer will give a metric point.
int64_t NextSequence(const Trainer& trainer) {
  int64_t next = 0;
  trainer.MetricsSince(std::numeric_limits<int64_t>::max(), &next);
  return next;
}

}  // namespace

TrainingStatus ToProto(const TrainerStatus& status) {
  TrainingStatus out;
  out.set_state(StateToProto(status.state));
  out.set_step(status.step);
  out.set_total_steps(status.total_steps);
  out.set_tokens_seen(status.tokens_seen);
  out.set_loss_ema(status.loss_ema);
  out.set_last_loss(status.last_loss);
  // The trainer keeps -1 until the first validation (cross-entropy is >= 0).
  if (status.validation_loss >= 0) out.set_validation_loss(status.validation_loss);
  out.set_tokens_per_second(status.tokens_per_second);
  out.set_eta_seconds(status.eta_seconds);
  out.set_learning_rate(status.learning_rate);
  out.set_last_checkpoint(status.last_checkpoint);
  out.set_error(status.error);
  return out;
}

TrainerServiceImpl::TrainerServiceImpl(Trainer* trainer) : trainer_(trainer) {}

grpc::Status TrainerServiceImpl::GetStatus(grpc::ServerContext*, const GetStatusRequest*,
                                           TrainingStatus* response) {
  *response = ToProto(trainer_->status());
  const ModelConfig& config = trainer_->model().config();
  response->set_model_name(config.name);
  response->set_model_parameters(config.NumParameters());
  response->set_backend(trainer_->model().backend()->name());
  *response->mutable_run_config() = trainer_->options().run;
  return grpc::Status::OK;
}

grpc::Status TrainerServiceImpl::StreamMetrics(grpc::ServerContext* context,
                                               const StreamMetricsRequest* request,
                                               grpc::ServerWriter<MetricSample>* writer) {
  if (request->from_sequence() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("from_sequence must be >= 0, not ", request->from_sequence()));
  }
  const absl::flat_hash_set<std::string> tags(request->tags().begin(), request->tags().end());
  // Lets the client see that the stream is live before the first point.
  writer->SendInitialMetadata();
  int64_t next = request->from_sequence();
  MetricSample sample;
  for (;;) {
    if (stopping_) return ShuttingDown();
    if (context->IsCancelled()) return Cancelled();
    // The state is read before the points: once it says the run has ended,
    // the points read after it are all there will be.
    const bool ended = Ended(trainer_->status().state);
    int64_t end = 0;
    const std::vector<MetricPoint> points = trainer_->MetricsSince(next, &end);
    // MetricsSince starts at the oldest kept point if older ones were dropped.
    int64_t sequence = end - static_cast<int64_t>(points.size());
    std::vector<int64_t> chosen;
    for (size_t i = 0; i < points.size(); ++i) {
      if (tags.empty() || tags.contains(points[i].tag)) chosen.push_back(static_cast<int64_t>(i));
    }
    for (size_t k = 0; k < chosen.size(); ++k) {
      const MetricPoint& point = points[chosen[k]];
      sample.set_sequence(sequence + chosen[k]);
      sample.set_step(point.step);
      sample.set_tag(point.tag);
      sample.set_value(point.value);
      // Coalesces a backlog into few frames; the last write flushes.
      grpc::WriteOptions options;
      if (k + 1 < chosen.size()) options.set_buffer_hint();
      if (!writer->Write(sample, options)) {
        return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    }
    next = end;
    if (ended) return grpc::Status::OK;
    // A short wait, so that cancellation, deadlines and shutdown are noticed.
    trainer_->WaitForMetrics(next, kPollInterval);
  }
}

grpc::Status TrainerServiceImpl::SaveCheckpoint(grpc::ServerContext* context,
                                                const SaveCheckpointRequest*,
                                                SaveCheckpointResponse* response) {
  // No deadline reads as the far future.
  const auto left = context->deadline() - std::chrono::system_clock::now();
  const absl::Duration wait = std::min(kDefaultCheckpointWait, absl::FromChrono(left));
  if (wait <= absl::ZeroDuration()) {
    return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "the deadline has passed");
  }
  absl::StatusOr<std::string> dir = trainer_->RequestCheckpoint(wait);
  if (!dir.ok()) return ToGrpcStatus(dir.status());
  // The step comes from the checkpoint itself: the loop may have moved on.
  ModelConfig config;
  absl::StatusOr<CheckpointState> state = ReadCheckpointState(*dir, &config);
  if (!state.ok()) return ToGrpcStatus(state.status());
  response->set_directory(*dir);
  response->set_step(state->step);
  return grpc::Status::OK;
}

grpc::Status TrainerServiceImpl::Stop(grpc::ServerContext* context, const StopRequest* request,
                                      StopResponse* response) {
  trainer_->RequestStop();
  if (request->wait()) {
    for (;;) {
      // Read before the state, so that an end after it wakes the wait below.
      const int64_t next = NextSequence(*trainer_);
      if (Ended(trainer_->status().state)) break;
      if (stopping_) return ShuttingDown();
      if (context->IsCancelled()) return Cancelled();
      trainer_->WaitForMetrics(next, kPollInterval);
    }
  }
  *response->mutable_status() = ToProto(trainer_->status());
  return grpc::Status::OK;
}

absl::StatusOr<std::unique_ptr<TrainerServer>> TrainerServer::Start(
    Trainer* trainer, const std::string& address, const rpc::ServerSecurity& security) {
  if (trainer == nullptr) return absl::InvalidArgumentError("trainer is null");
  std::unique_ptr<TrainerServer> server(new TrainerServer());
  server->service_ = std::make_unique<TrainerServiceImpl>(trainer);
  rpc::GrpcServer::Options grpc_options;
  grpc_options.address = address;
  grpc_options.security = security;
  grpc_options.service_name = "maximus.trainer.TrainerService";
  // Every request is a few bytes.
  grpc_options.max_receive_message_bytes = 64 << 10;
  // Streams and waiting Stop calls return within a poll interval of the
  // shutdown hook; a SaveCheckpoint in flight ends with the trainer's
  // current step.
  grpc_options.shutdown_grace = absl::Seconds(2);
  server->grpc_server_ = std::make_unique<rpc::GrpcServer>(grpc_options);
  server->grpc_server_->AddService(server->service_.get());
  TrainerServiceImpl* service = server->service_.get();
  server->grpc_server_->OnShutdown([service] { service->BeginShutdown(); });
  MAXIMUS_RETURN_IF_ERROR(server->grpc_server_->Start());
  return server;
}

}  // namespace maximus::trainer
