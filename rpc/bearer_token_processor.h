// BearerTokenProcessor: admits a call only when its metadata holds
// `authorization: Bearer <token>`, comparing the token in constant time.
// It runs inside gRPC's server auth filter, before any service sees the call,
// which is why it needs secure (TLS) server credentials.

#ifndef MAXIMUS_RPC_BEARER_TOKEN_PROCESSOR_H_
#define MAXIMUS_RPC_BEARER_TOKEN_PROCESSOR_H_

#include <grpcpp/security/auth_metadata_processor.h>

#include <string>

#include "absl/strings/string_view.h"

namespace maximus::rpc {

// Compares without returning early, so the time taken tells nothing about
// where `given` first differs from `expected` (only about their lengths).
bool ConstantTimeEquals(absl::string_view given, absl::string_view expected);

class BearerTokenProcessor : public grpc::AuthMetadataProcessor {
 public:
  explicit BearerTokenProcessor(std::string token);

  // The check is cheap: run it on gRPC's own thread.
  bool IsBlocking() const override { return false; }

  grpc::Status Process(const InputMetadata& auth_metadata, grpc::AuthContext* context,
                       OutputMetadata* consumed_auth_metadata,
                       OutputMetadata* response_metadata) override;

 private:
  const std::string expected_header_;  // "Bearer <token>"
};

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_BEARER_TOKEN_PROCESSOR_H_
