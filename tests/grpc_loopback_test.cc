// The gRPC path end to end: a real GrpcServer on a loopback port with health
// checking, reflection and ServerInfoService (generated from
// proto/common.proto), and a client talking to it over TCP, with deadlines.

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <chrono>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "proto/common.grpc.pb.h"
#include "rpc/grpc_server.h"
#include "rpc/grpc_test_util.h"

namespace maximus {
namespace {

using ::maximus::rpc::CallRaw;

class GrpcLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rpc::GrpcServer::Options options;
    options.service_name = "maximus.Test";
    server_ = std::make_unique<rpc::GrpcServer>(options);
    const absl::Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started;
    ASSERT_GT(server_->port(), 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  static std::chrono::system_clock::time_point Deadline() {
    return std::chrono::system_clock::now() + std::chrono::seconds(10);
  }

  std::unique_ptr<rpc::GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(GrpcLoopbackTest, GeneratedServiceAnswers) {
  auto stub = ServerInfoService::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(Deadline());
  ServerInfo info;
  const grpc::Status status = stub->GetServerInfo(&context, GetServerInfoRequest(), &info);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(info.service(), "maximus.Test");
  EXPECT_EQ(info.pid(), getpid());
}

TEST_F(GrpcLoopbackTest, HealthCheckReportsServing) {
  // An empty HealthCheckRequest asks for the server's overall health; the
  // answer HealthCheckResponse{status: SERVING = 1} is the bytes 08 01.
  std::string response;
  const grpc::Status status = CallRaw(channel_, "/grpc.health.v1.Health/Check", "", &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response, std::string("\x08\x01", 2));
}

TEST_F(GrpcLoopbackTest, UnknownMethodIsUnimplemented) {
  std::string response;
  EXPECT_EQ(CallRaw(channel_, "/maximus.Nothing/Here", "", &response).error_code(),
            grpc::StatusCode::UNIMPLEMENTED);
}

TEST_F(GrpcLoopbackTest, ExpiredDeadlineFailsFast) {
  auto stub = ServerInfoService::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
  ServerInfo info;
  EXPECT_EQ(stub->GetServerInfo(&context, GetServerInfoRequest(), &info).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
}

}  // namespace
}  // namespace maximus
