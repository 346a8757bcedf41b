#include "proto/server_info_service.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace maximus {

ServerInfoServiceImpl::ServerInfoServiceImpl(std::string service) {
  info_.set_service(std::move(service));
  info_.set_version("0.1.0");
  info_.set_start_time_unix_ms(absl::ToUnixMillis(absl::Now()));
  info_.set_pid(getpid());
}

grpc::Status ServerInfoServiceImpl::GetServerInfo(grpc::ServerContext*, const GetServerInfoRequest*,
                                                  ServerInfo* response) {
  *response = info_;
  return grpc::Status::OK;
}

void EnableStandardServerFeatures() {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const std::string& address, int64_t max_request_bytes,
    std::initializer_list<grpc::Service*> services, int* port) {
  EnableStandardServerFeatures();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(address, grpc::InsecureServerCredentials(), port);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(std::min<int64_t>(INT32_MAX, max_request_bytes + (4 << 20))));
  builder.SetMaxSendMessageSize(INT32_MAX);
  for (grpc::Service* service : services) builder.RegisterService(service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", address));
  }
  return server;
}

}  // namespace maximus
