// The gRPC path end to end: a real server on a loopback port with health
// checking, reflection and a service generated from proto/common.proto, and a
// client talking to it over TCP, with deadlines.

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "proto/common.grpc.pb.h"
#include "proto/grpc_test_util.h"

namespace maximus {
namespace {

class TestServerInfo final : public ServerInfoService::Service {
 public:
  grpc::Status GetServerInfo(grpc::ServerContext*, const GetServerInfoRequest*,
                             ServerInfo* response) override {
    response->set_service("maximus.Test");
    response->set_version("test");
    response->set_start_time_unix_ms(1234);
    response->set_pid(getpid());
    return grpc::Status::OK;
  }
};

class GrpcLoopbackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port_),
                                   grpc::InsecureChannelCredentials());
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  static std::chrono::system_clock::time_point Deadline() {
    return std::chrono::system_clock::now() + std::chrono::seconds(10);
  }

  int port_ = 0;
  TestServerInfo service_;
  std::unique_ptr<grpc::Server> server_;
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
