// ServerSecurity: what a GrpcServer needs to serve TLS, mutual TLS and a
// bearer token. Empty fields leave the server as before: plaintext, no token.
//
// A token needs TLS: sent in cleartext it could be read off the wire and
// replayed. With a token, every call (health checks included, so that a
// server's existence and state are not told to strangers) needs the metadata
// `authorization: Bearer <token>`; others end with UNAUTHENTICATED.

#ifndef MAXIMUS_RPC_SERVER_SECURITY_H_
#define MAXIMUS_RPC_SERVER_SECURITY_H_

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace maximus::rpc {

struct ServerSecurity {
  // PEM text (not paths) of the server's certificate chain and private key.
  // Both or neither.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // PEM of the CA that signs client certificates; when set, clients must
  // present one (mutual TLS). Needs the server certificate.
  std::string tls_client_ca_pem;
  // The bearer token every call must carry. Needs TLS.
  std::string token;

  bool tls() const { return !tls_cert_pem.empty(); }

  // Whether the fields fit together; errors name the flag that sets the
  // field (--tls_cert, --tls_key, --tls_client_ca, --token_file).
  absl::Status Validate() const;

  // The credentials to listen with (after Validate()).
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeCredentials() const;
};

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_SERVER_SECURITY_H_
