// TrainerService end to end: a real training run on the CPU backend over a
// real embedded store, watched and steered by a gRPC client on loopback.

#include "trainer/trainer_service.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "data_service/embedded_data_source.h"
#include "data_service/stream_test_util.h"
#include "gtest/gtest.h"
#include "proto/trainer.grpc.pb.h"
#include "rpc/grpc_test_util.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/trainer_test_util.h"

namespace maximus::trainer {
namespace {

namespace fs = std::filesystem;

// Far more steps than the test lets run: Stop ends every run.
constexpr int64_t kSteps = 100000;

std::unique_ptr<data::EmbeddedDataSource> MakeData(const std::string& name) {
  return MakeTestData(name, 200);
}

TrainerOptions Options(const std::string& out) {
  TrainerOptions o = TestTrainerOptions(out);
  o.model.name = "service-test";
  o.model.layers = 1;
  o.run.set_steps(kSteps);
  o.run.set_seq_len(16);
  o.run.set_accumulation(1);
  o.run.set_eval_interval(20);
  o.run.set_eval_batches(1);
  return o;
}

std::chrono::system_clock::time_point In(int seconds) {
  return std::chrono::system_clock::now() + std::chrono::seconds(seconds);
}

class TrainerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    data_ = MakeData(name + "_store");
    ASSERT_NE(data_, nullptr);
    options_ = Options(name);
    auto trainer = Trainer::Create(&backend_, data_.get(), options_);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    trainer_ = *std::move(trainer);
    auto server = TrainerServer::Start(trainer_.get(), "127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    stub_ = TrainerService::NewStub(channel_);
  }

  void TearDown() override {
    if (trainer_ != nullptr) trainer_->RequestStop();
    if (run_.joinable()) run_.join();
    if (server_ != nullptr) server_->Shutdown();
  }

  void StartRun() {
    run_ = std::thread([this] { run_status_ = trainer_->Run(); });
  }

  TrainingStatus GetStatus() {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    TrainingStatus status;
    const grpc::Status s = stub_->GetStatus(&context, GetStatusRequest(), &status);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return status;
  }

  // Reads `count` samples of a stream (or fewer if it ends).
  static std::vector<MetricSample> Read(grpc::ClientReader<MetricSample>* reader, int count) {
    std::vector<MetricSample> out;
    MetricSample sample;
    while (static_cast<int>(out.size()) < count && reader->Read(&sample)) out.push_back(sample);
    return out;
  }

  CpuBackend backend_;
  std::unique_ptr<data::EmbeddedDataSource> data_;
  TrainerOptions options_;
  std::unique_ptr<Trainer> trainer_;
  std::unique_ptr<TrainerServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<TrainerService::Stub> stub_;
  std::thread run_;
  absl::Status run_status_;
};

TEST_F(TrainerServiceTest, WatchesAndSteersARun) {
  StartRun();

  // Progress, seen through a filtered stream from the start of the run.
  grpc::ClientContext first_context;
  first_context.set_deadline(In(120));
  StreamMetricsRequest first_request;
  first_request.set_from_sequence(0);
  first_request.add_tags("train/loss");
  auto first = stub_->StreamMetrics(&first_context, first_request);
  const std::vector<MetricSample> losses = Read(first.get(), 3);
  ASSERT_EQ(losses.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(losses[i].tag(), "train/loss");
    EXPECT_EQ(losses[i].step(), i + 1);
    EXPECT_GT(losses[i].value(), 0);
    if (i > 0) {
      EXPECT_GT(losses[i].sequence(), losses[i - 1].sequence());
    }
  }
  const TrainingStatus before = GetStatus();
  EXPECT_EQ(before.state(), TrainingStatus::RUNNING);
  EXPECT_GE(before.step(), 3);
  EXPECT_EQ(before.total_steps(), kSteps);
  EXPECT_EQ(before.model_name(), "service-test");
  EXPECT_EQ(before.model_parameters(), options_.model.NumParameters());
  EXPECT_EQ(before.backend(), "cpu");
  EXPECT_TRUE(before.has_validation_loss());  // Measured at step 0.
  EXPECT_GT(before.tokens_seen(), 0);
  EXPECT_GT(before.learning_rate(), 0);
  // Two more steps later, the status has moved on.
  const std::vector<MetricSample> more = Read(first.get(), before.step() + 2 - 3);
  ASSERT_EQ(static_cast<int64_t>(more.size()), before.step() + 2 - 3);
  EXPECT_EQ(more.back().step(), before.step() + 2);
  const TrainingStatus after = GetStatus();
  EXPECT_GT(after.step(), before.step());
  EXPECT_GT(after.tokens_seen(), before.tokens_seen());
  first_context.TryCancel();
  EXPECT_EQ(first->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // A second stream, all tags, from the sequence number of the second loss.
  grpc::ClientContext second_context;
  second_context.set_deadline(In(120));
  StreamMetricsRequest second_request;
  second_request.set_from_sequence(losses[1].sequence());
  auto second = stub_->StreamMetrics(&second_context, second_request);
  const std::vector<MetricSample> resumed = Read(second.get(), 10);
  ASSERT_EQ(resumed.size(), 10u);
  EXPECT_EQ(resumed[0].sequence(), losses[1].sequence());
  EXPECT_EQ(resumed[0].tag(), "train/loss");
  EXPECT_EQ(resumed[0].step(), 2);
  EXPECT_EQ(resumed[0].value(), losses[1].value());
  for (size_t i = 1; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i].sequence(), resumed[i - 1].sequence() + 1);
    EXPECT_GE(resumed[i].step(), resumed[i - 1].step());
  }
  second_context.TryCancel();
  EXPECT_EQ(second->Finish().error_code(), grpc::StatusCode::CANCELLED);

  // A checkpoint on request.
  {
    grpc::ClientContext context;
    context.set_deadline(In(120));
    SaveCheckpointResponse response;
    const grpc::Status s = stub_->SaveCheckpoint(&context, SaveCheckpointRequest(), &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_GT(response.step(), 0);
    EXPECT_EQ(fs::path(response.directory()).filename().string(),
              absl::StrFormat("step-%08d", response.step()));
    EXPECT_TRUE(fs::exists(response.directory() + "/model.safetensors")) << response.directory();
  }

  // Stop: the loop ends after its current step with a final checkpoint.
  {
    grpc::ClientContext context;
    context.set_deadline(In(120));
    StopRequest request;
    request.set_wait(true);
    StopResponse response;
    const grpc::Status s = stub_->Stop(&context, request, &response);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(response.status().state(), TrainingStatus::FINISHED);
    EXPECT_LT(response.status().step(), kSteps);
    EXPECT_EQ(
        response.status().last_checkpoint(),
        absl::StrFormat("%s/step-%08d", trainer_->checkpoint_root(), response.status().step()));
    EXPECT_TRUE(fs::exists(response.status().last_checkpoint() + "/model.safetensors"));
  }
  run_.join();
  EXPECT_TRUE(run_status_.ok()) << run_status_;
  const TrainingStatus finished = GetStatus();
  EXPECT_EQ(finished.state(), TrainingStatus::FINISHED);
  EXPECT_LT(finished.step(), kSteps);
  EXPECT_TRUE(finished.error().empty()) << finished.error();

  // After the run, a stream from 0 sends every point and ends OK.
  {
    int64_t next = 0;
    const std::vector<MetricPoint> points = trainer_->MetricsSince(0, &next);
    ASSERT_EQ(static_cast<int64_t>(points.size()), next);
    grpc::ClientContext context;
    context.set_deadline(In(60));
    auto stream = stub_->StreamMetrics(&context, StreamMetricsRequest());
    std::vector<MetricSample> all = Read(stream.get(), static_cast<int>(next) + 1);
    const grpc::Status s = stream->Finish();
    EXPECT_TRUE(s.ok()) << s.error_message();
    ASSERT_EQ(all.size(), points.size());
    for (size_t i = 0; i < all.size(); ++i) {
      EXPECT_EQ(all[i].sequence(), static_cast<int64_t>(i));
      EXPECT_EQ(all[i].step(), points[i].step);
      EXPECT_EQ(all[i].tag(), points[i].tag);
      EXPECT_EQ(all[i].value(), points[i].value);
    }
    EXPECT_EQ(all.back().step(), finished.step());
  }

  // Nothing left to checkpoint; stopping again is harmless.
  {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    SaveCheckpointResponse response;
    EXPECT_EQ(stub_->SaveCheckpoint(&context, SaveCheckpointRequest(), &response).error_code(),
              grpc::StatusCode::FAILED_PRECONDITION);
  }
  {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    StopResponse response;
    ASSERT_TRUE(stub_->Stop(&context, StopRequest(), &response).ok());
    EXPECT_EQ(response.status().state(), TrainingStatus::FINISHED);
  }
}

TEST_F(TrainerServiceTest, StandardServicesAndBadRequests) {
  EXPECT_TRUE(rpc::ReportsServing(channel_));
  {
    auto info = ServerInfoService::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(In(10));
    ServerInfo response;
    ASSERT_TRUE(info->GetServerInfo(&context, GetServerInfoRequest(), &response).ok());
    EXPECT_EQ(response.service(), "maximus.trainer.TrainerService");
  }
  {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    StreamMetricsRequest request;
    request.set_from_sequence(-1);
    auto stream = stub_->StreamMetrics(&context, request);
    MetricSample sample;
    EXPECT_FALSE(stream->Read(&sample));
    const grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(s.error_message().find("from_sequence"), std::string::npos) << s.error_message();
  }
  // Before Run: starting, nothing measured, nothing to checkpoint.
  const TrainingStatus status = GetStatus();
  EXPECT_EQ(status.state(), TrainingStatus::STARTING);
  EXPECT_EQ(status.step(), 0);
  EXPECT_FALSE(status.has_validation_loss());
  {
    grpc::ClientContext context;
    context.set_deadline(In(10));
    SaveCheckpointResponse response;
    const grpc::Status s = stub_->SaveCheckpoint(&context, SaveCheckpointRequest(), &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << s.error_message();
  }
  // A stream that waits for points honours its deadline.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(300));
    auto stream = stub_->StreamMetrics(&context, StreamMetricsRequest());
    MetricSample sample;
    EXPECT_FALSE(stream->Read(&sample));
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
}

TEST_F(TrainerServiceTest, ShutdownEndsOpenStreams) {
  grpc::ClientContext context;
  context.set_deadline(In(120));
  auto stream = stub_->StreamMetrics(&context, StreamMetricsRequest());
  // The server announces a stream it has begun serving.
  stream->WaitForInitialMetadata();
  server_->Shutdown();
  MetricSample sample;
  EXPECT_FALSE(stream->Read(&sample));
  // The service's own answer, not the cancellation at the end of the
  // server's grace period.
  const grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_NE(s.error_message().find("shutting down"), std::string::npos) << s.error_message();
}

}  // namespace
}  // namespace maximus::trainer
