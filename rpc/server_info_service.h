// ServerInfoService (common.proto): which service a server hosts, its
// version, start time and process id. GrpcServer registers one on every
// server.

#ifndef MAXIMUS_RPC_SERVER_INFO_SERVICE_H_
#define MAXIMUS_RPC_SERVER_INFO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <string>

#include "proto/common.grpc.pb.h"

namespace maximus::rpc {

class ServerInfoServiceImpl final : public ServerInfoService::Service {
 public:
  // `service`: the full name of the server's main service.
  explicit ServerInfoServiceImpl(std::string service);
  grpc::Status GetServerInfo(grpc::ServerContext* context, const GetServerInfoRequest* request,
                             ServerInfo* response) override;

 private:
  ServerInfo info_;
};

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_SERVER_INFO_SERVICE_H_
