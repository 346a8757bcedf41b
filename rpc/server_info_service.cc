#include "rpc/server_info_service.h"

#include <unistd.h>

#include <utility>

#include "absl/time/clock.h"

namespace maximus::rpc {

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

}  // namespace maximus::rpc
