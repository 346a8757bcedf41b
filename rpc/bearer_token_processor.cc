#include "rpc/bearer_token_processor.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace maximus::rpc {

bool ConstantTimeEquals(absl::string_view given, absl::string_view expected) {
  // Walks all of `expected` whatever `given` holds.
  unsigned char difference = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i) {
    const unsigned char g = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    difference |= g ^ static_cast<unsigned char>(expected[i]);
  }
  return difference == 0;
}

BearerTokenProcessor::BearerTokenProcessor(std::string token)
    : expected_header_(absl::StrCat("Bearer ", token)) {}

grpc::Status BearerTokenProcessor::Process(const InputMetadata& auth_metadata,
                                           grpc::AuthContext* /*context*/,
                                           OutputMetadata* consumed_auth_metadata,
                                           OutputMetadata* /*response_metadata*/) {
  const auto found = auth_metadata.find("authorization");
  if (found == auth_metadata.end()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing \"authorization: Bearer <token>\" metadata");
  }
  const absl::string_view given(found->second.data(), found->second.size());
  if (!ConstantTimeEquals(given, expected_header_)) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token");
  }
  // Consumed: the token is not passed on to the service's metadata.
  consumed_auth_metadata->insert(std::make_pair("authorization", std::string(given)));
  return grpc::Status::OK;
}

}  // namespace maximus::rpc
