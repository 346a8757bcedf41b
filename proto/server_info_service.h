// ServerInfoService (common.proto), served by every Maximus server, and the
// setup every server shares: health checking and reflection.

#ifndef MAXIMUS_PROTO_SERVER_INFO_SERVICE_H_
#define MAXIMUS_PROTO_SERVER_INFO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "proto/common.grpc.pb.h"

namespace maximus {

class ServerInfoServiceImpl final : public ServerInfoService::Service {
 public:
  // `service`: the full name of the server's main service.
  explicit ServerInfoServiceImpl(std::string service);
  grpc::Status GetServerInfo(grpc::ServerContext* context, const GetServerInfoRequest* request,
                             ServerInfo* response) override;

 private:
  ServerInfo info_;
};

// Turns on gRPC health checking and server reflection for servers built
// after the call.
void EnableStandardServerFeatures();

// Starts a server on `address` (port 0: any free port, stored in *port)
// with `services`, health checking and reflection. The transport admits
// somewhat more than `max_request_bytes`, so that oversize requests reach the
// service and get an error that names the limit.
absl::StatusOr<std::unique_ptr<grpc::Server>> StartGrpcServer(
    const std::string& address, int64_t max_request_bytes,
    std::initializer_list<grpc::Service*> services, int* port);

}  // namespace maximus

#endif  // MAXIMUS_PROTO_SERVER_INFO_SERVICE_H_
