// ClientSecurity: the client's side of ServerSecurity. Turns PEMs and a
// bearer token into channel credentials (TLS, with the token attached to
// every call when set). Empty: plaintext, as before.

#ifndef MAXIMUS_RPC_CLIENT_SECURITY_H_
#define MAXIMUS_RPC_CLIENT_SECURITY_H_

#include <grpcpp/security/credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::rpc {

struct ClientSecurity {
  // Use TLS. With tls_ca_pem empty, the system's root certificates verify
  // the server.
  bool tls = false;
  // PEM of the CA that signed the server's certificate.
  std::string tls_ca_pem;
  // PEM of this client's certificate and key, for mutual TLS.
  std::string tls_cert_pem;
  std::string tls_key_pem;
  // Sent as `authorization: Bearer <token>` on every call; needs TLS.
  std::string token;
  // Checked against the server certificate instead of the host of the
  // address dialled (e.g. "localhost" when dialling 127.0.0.1); empty: that host.
  std::string tls_server_name;

  // Reads the files named; empty paths are left out, and any non-empty
  // path but `token_file` turns TLS on. Errors name the unreadable file.
  static absl::StatusOr<ClientSecurity> FromFiles(absl::string_view ca_file,
                                                  absl::string_view cert_file,
                                                  absl::string_view key_file,
                                                  absl::string_view token_file);

  // Fails when the fields do not fit together (a token or client
  // certificate without TLS, a certificate without its key).
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeCredentials() const;
  // Channel arguments these settings need (the TLS server name override).
  void AddChannelArguments(grpc::ChannelArguments* args) const;
};

// The channel to `address` with `security`.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientSecurity& security,
                                                           grpc::ChannelArguments args = {});

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_CLIENT_SECURITY_H_
