// gRPC TokenizerService over one Tokenizer, and the server that hosts it
// beside ServerInfoService, health checking and reflection.

#ifndef MAXIMUS_TOKENIZER_TOKENIZER_SERVICE_H_
#define MAXIMUS_TOKENIZER_TOKENIZER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "proto/common.grpc.pb.h"
#include "proto/tokenizer.grpc.pb.h"
#include "rpc/grpc_server.h"
#include "tokenizer/tokenizer.h"

namespace maximus::tokenizer {

class TokenizerServiceImpl final : public TokenizerService::Service {
 public:
  // `max_request_bytes`: larger requests (and stream messages) are rejected
  // with INVALID_ARGUMENT. `max_response_bytes`: a call whose response (or
  // stream message) would be larger ends with RESOURCE_EXHAUSTED, before the
  // response is built where its size can be bounded in advance (Decode).
  TokenizerServiceImpl(const Tokenizer* tokenizer, int64_t max_request_bytes,
                       int64_t max_response_bytes)
      : tokenizer_(tokenizer),
        max_request_bytes_(max_request_bytes),
        max_response_bytes_(max_response_bytes) {}

  grpc::Status Encode(grpc::ServerContext* context, const EncodeRequest* request,
                      EncodeResponse* response) override;
  grpc::Status EncodeBatch(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<EncodeBatchResponse, EncodeBatchRequest>* stream) override;
  grpc::Status Decode(grpc::ServerContext* context, const DecodeRequest* request,
                      DecodeResponse* response) override;
  grpc::Status GetInfo(grpc::ServerContext* context, const GetInfoRequest* request,
                       TokenizerInfo* response) override;

 private:
  grpc::Status CheckSize(const google::protobuf::Message& request) const;
  // RESOURCE_EXHAUSTED naming `field` when `bytes` exceed the response limit.
  grpc::Status CheckResponseSize(absl::string_view field, int64_t bytes) const;
  // The serialized size of `ids` as a packed repeated int32 field.
  static int64_t PackedIdsBytes(const std::vector<int32_t>& ids);
  // Whether Decode(ids) may take more than the response limit. Cheap when an
  // upper bound of the text's size fits; otherwise measured slice by slice so
  // that memory stays near the limit.
  bool DecodedTextMayExceedLimit(absl::Span<const int32_t> ids, const DecodeOptions& options) const;

  const Tokenizer* tokenizer_;
  int64_t max_request_bytes_;
  int64_t max_response_bytes_;
};

// A running server: the tokenizer, its service and the gRPC server.
class TokenizerServer {
 public:
  struct Options {
    // Port 0: any free port, see port().
    std::string address = absl::StrCat(rpc::kLoopbackHost, ":0");
    int64_t max_request_bytes = 256 << 20;
    // TLS and bearer token; empty: plaintext, no token.
    rpc::ServerSecurity security;
    // Larger responses (or stream messages) are refused with
    // RESOURCE_EXHAUSTED; a few ids may decode to much text.
    int64_t max_response_bytes = 64 << 20;
  };
  static absl::StatusOr<std::unique_ptr<TokenizerServer>> Start(
      std::unique_ptr<Tokenizer> tokenizer, const Options& options);

  int port() const { return grpc_server_->port(); }
  // HOST:PORT with the bound port.
  const std::string& address() const { return grpc_server_->address(); }
  void Wait() { grpc_server_->Wait(); }
  void Shutdown() { grpc_server_->Shutdown(); }
  // Blocks until SIGTERM or SIGINT, then shuts down; returns the signal.
  absl::StatusOr<int> WaitForTerminationSignal() {
    return grpc_server_->WaitForTerminationSignal();
  }

 private:
  TokenizerServer() = default;

  std::unique_ptr<Tokenizer> tokenizer_;
  std::unique_ptr<TokenizerServiceImpl> service_;
  // Last: destroyed (and so shut down) first, while the service still exists.
  std::unique_ptr<rpc::GrpcServer> grpc_server_;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_TOKENIZER_SERVICE_H_
