// Test helpers for calling gRPC services without their generated stubs.

#ifndef MAXIMUS_PROTO_GRPC_TEST_UTIL_H_
#define MAXIMUS_PROTO_GRPC_TEST_UTIL_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

namespace maximus {

// Calls `method` with raw request bytes through the generic stub, for
// services whose .proto is not part of this build (grpc.health.v1).
inline grpc::Status CallRaw(const std::shared_ptr<grpc::Channel>& channel,
                            const std::string& method, const std::string& request_bytes,
                            std::string* response_bytes) {
  grpc::GenericStub generic(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice request_slice(request_bytes);
  grpc::ByteBuffer request(&request_slice, 1), response;
  std::promise<grpc::Status> result;
  generic.UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                    [&](grpc::Status status) { result.set_value(status); });
  const grpc::Status status = result.get_future().get();
  std::vector<grpc::Slice> slices;
  if (status.ok() && response.Dump(&slices).ok()) {
    for (const grpc::Slice& slice : slices) {
      response_bytes->append(reinterpret_cast<const char*>(slice.begin()), slice.size());
    }
  }
  return status;
}

// grpc.health.v1.Health/Check for the whole server: an empty request; the
// answer HealthCheckResponse{status: SERVING = 1} is the bytes 08 01.
inline bool ReportsServing(const std::shared_ptr<grpc::Channel>& channel) {
  std::string response;
  return CallRaw(channel, "/grpc.health.v1.Health/Check", "", &response).ok() &&
         response == std::string("\x08\x01", 2);
}

}  // namespace maximus

#endif  // MAXIMUS_PROTO_GRPC_TEST_UTIL_H_
