#include "rpc/server_security.h"

#include <grpcpp/security/server_credentials.h>

#include "rpc/bearer_token_processor.h"

namespace maximus::rpc {

absl::Status ServerSecurity::Validate() const {
  if (tls_cert_pem.empty() != tls_key_pem.empty()) {
    return absl::InvalidArgumentError(tls_cert_pem.empty()
                                          ? "--tls_key needs --tls_cert (the server certificate)"
                                          : "--tls_cert needs --tls_key (its private key)");
  }
  if (!tls_client_ca_pem.empty() && !tls()) {
    return absl::InvalidArgumentError(
        "--tls_client_ca needs --tls_cert and --tls_key (mutual TLS is TLS)");
  }
  if (!token.empty() && !tls()) {
    return absl::InvalidArgumentError(
        "--token_file needs --tls_cert and --tls_key: a bearer token sent in cleartext could "
        "be read off the wire");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerSecurity::MakeCredentials() const {
  if (absl::Status valid = Validate(); !valid.ok()) return valid;
  if (!tls()) return grpc::InsecureServerCredentials();
  grpc::SslServerCredentialsOptions ssl(
      tls_client_ca_pem.empty() ? GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE
                                : GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  ssl.pem_root_certs = tls_client_ca_pem;
  ssl.pem_key_cert_pairs.push_back({tls_key_pem, tls_cert_pem});
  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::SslServerCredentials(ssl);
  if (credentials == nullptr) {
    return absl::InvalidArgumentError("--tls_cert/--tls_key/--tls_client_ca: gRPC refused them");
  }
  if (!token.empty()) {
    credentials->SetAuthMetadataProcessor(std::make_shared<BearerTokenProcessor>(token));
  }
  return credentials;
}

}  // namespace maximus::rpc
