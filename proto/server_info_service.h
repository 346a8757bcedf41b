// ServerInfoService (common.proto), served by every Maximus server, and the
// setup every server shares: health checking and reflection.

#ifndef MAXIMUS_PROTO_SERVER_INFO_SERVICE_H_
#define MAXIMUS_PROTO_SERVER_INFO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <string>

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

}  // namespace maximus

#endif  // MAXIMUS_PROTO_SERVER_INFO_SERVICE_H_
