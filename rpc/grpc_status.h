// absl::Status <-> grpc::Status, code for code (both use the canonical codes).

#ifndef MAXIMUS_RPC_GRPC_STATUS_H_
#define MAXIMUS_RPC_GRPC_STATUS_H_

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace maximus::rpc {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

// `context` (e.g. the server address) prefixes the message.
inline absl::Status FromGrpcStatus(const grpc::Status& status, absl::string_view context = "") {
  if (status.ok()) return absl::OkStatus();
  std::string message = status.error_message();
  if (!context.empty()) message = std::string(context) + ": " + message;
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), message);
}

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_GRPC_STATUS_H_
