// Test helpers for calling gRPC services without their generated stubs, for
// services whose .proto is not part of this build (grpc.health.v1,
// grpc.reflection.v1alpha): requests and responses are raw bytes.

#ifndef MAXIMUS_RPC_GRPC_TEST_UTIL_H_
#define MAXIMUS_RPC_GRPC_TEST_UTIL_H_

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace maximus::rpc {

inline std::string ByteBufferToString(const grpc::ByteBuffer& buffer) {
  std::string bytes;
  std::vector<grpc::Slice> slices;
  if (!buffer.Dump(&slices).ok()) return bytes;
  for (const grpc::Slice& slice : slices) {
    bytes.append(reinterpret_cast<const char*>(slice.begin()), slice.size());
  }
  return bytes;
}

// Calls unary `method` with raw request bytes through the generic stub.
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
  if (status.ok()) response_bytes->append(ByteBufferToString(response));
  return status;
}

// grpc.health.v1.Health/Check for the whole server: an empty request; the
// answer HealthCheckResponse{status: SERVING = 1} is the bytes 08 01.
inline bool ReportsServing(const std::shared_ptr<grpc::Channel>& channel) {
  std::string response;
  return CallRaw(channel, "/grpc.health.v1.Health/Check", "", &response).ok() &&
         response == std::string("\x08\x01", 2);
}

// A streaming call (client-, server- or bidirectional) to `method` with raw
// message bytes, one operation at a time.
class RawStream {
 public:
  RawStream(const std::shared_ptr<grpc::Channel>& channel, const std::string& method,
            std::chrono::seconds timeout = std::chrono::seconds(10))
      : stub_(channel) {
    context_.set_deadline(std::chrono::system_clock::now() + timeout);
    call_ = stub_.PrepareCall(&context_, method, &queue_);
    call_->StartCall(this);
    started_ = Await();
  }
  RawStream(const RawStream&) = delete;
  RawStream& operator=(const RawStream&) = delete;
  ~RawStream() {
    if (!finished_) {
      context_.TryCancel();
      Finish();
    }
    queue_.Shutdown();
    void* tag;
    bool ok;
    while (queue_.Next(&tag, &ok)) {
    }
  }

  bool started() const { return started_; }

  bool Write(const std::string& bytes) {
    grpc::Slice slice(bytes);
    grpc::ByteBuffer buffer(&slice, 1);
    call_->Write(buffer, this);
    return Await();
  }

  bool WritesDone() {
    call_->WritesDone(this);
    return Await();
  }

  // The next message; nullopt once the server has ended the stream.
  std::optional<std::string> Read() {
    grpc::ByteBuffer buffer;
    call_->Read(&buffer, this);
    if (!Await()) return std::nullopt;
    return ByteBufferToString(buffer);
  }

  grpc::Status Finish() {
    grpc::Status status;
    call_->Finish(&status, this);
    Await();
    finished_ = true;
    return status;
  }

 private:
  bool Await() {
    void* tag = nullptr;
    bool ok = false;
    return queue_.Next(&tag, &ok) && ok;
  }

  grpc::GenericStub stub_;
  grpc::ClientContext context_;
  grpc::CompletionQueue queue_;
  std::unique_ptr<grpc::GenericClientAsyncReaderWriter> call_;
  bool started_ = false;
  bool finished_ = false;
};

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_GRPC_TEST_UTIL_H_
