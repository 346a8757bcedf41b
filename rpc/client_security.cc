#include "rpc/client_security.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "rpc/secret_file.h"

namespace maximus::rpc {
namespace {

// Adds `authorization: Bearer <token>` to each call.
class BearerTokenPlugin : public grpc::MetadataCredentialsPlugin {
 public:
  explicit BearerTokenPlugin(std::string token) : header_(absl::StrCat("Bearer ", token)) {}

  bool IsBlocking() const override { return false; }

  grpc::Status GetMetadata(grpc::string_ref /*service_url*/, grpc::string_ref /*method_name*/,
                           const grpc::AuthContext& /*channel_auth_context*/,
                           std::multimap<grpc::string, grpc::string>* metadata) override {
    metadata->insert(std::make_pair("authorization", header_));
    return grpc::Status::OK;
  }

 private:
  const std::string header_;
};

}  // namespace

absl::StatusOr<ClientSecurity> ClientSecurity::FromFiles(absl::string_view ca_file,
                                                         absl::string_view cert_file,
                                                         absl::string_view key_file,
                                                         absl::string_view token_file) {
  ClientSecurity security;
  if (!ca_file.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.tls_ca_pem, ReadSecretFile("TLS CA", ca_file));
  }
  if (!cert_file.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.tls_cert_pem,
                             ReadSecretFile("TLS client certificate", cert_file));
  }
  if (!key_file.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.tls_key_pem, ReadSecretFile("TLS client key", key_file));
  }
  if (!token_file.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.token, ReadTokenFile("token file", token_file));
  }
  security.tls = !ca_file.empty() || !cert_file.empty() || !key_file.empty();
  return security;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ClientSecurity::MakeCredentials() const {
  if (tls_cert_pem.empty() != tls_key_pem.empty()) {
    return absl::InvalidArgumentError(
        "a TLS client certificate needs its key, and a key its "
        "certificate");
  }
  if (!tls) {
    if (!token.empty() || !tls_cert_pem.empty() || !tls_ca_pem.empty()) {
      return absl::InvalidArgumentError(
          "a bearer token or TLS certificates need TLS (ClientSecurity::tls)");
    }
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = tls_ca_pem;
  ssl.pem_cert_chain = tls_cert_pem;
  ssl.pem_private_key = tls_key_pem;
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::SslCredentials(ssl);
  if (!token.empty()) {
    credentials = grpc::CompositeChannelCredentials(
        credentials,
        grpc::MetadataCredentialsFromPlugin(std::make_unique<BearerTokenPlugin>(token)));
  }
  if (credentials == nullptr) return absl::InvalidArgumentError("gRPC refused the TLS settings");
  return credentials;
}

void ClientSecurity::AddChannelArguments(grpc::ChannelArguments* args) const {
  if (tls && !tls_server_name.empty()) args->SetSslTargetNameOverride(tls_server_name);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeChannel(const std::string& address,
                                                           const ClientSecurity& security,
                                                           grpc::ChannelArguments args) {
  MAXIMUS_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                           security.MakeCredentials());
  security.AddChannelArguments(&args);
  return grpc::CreateCustomChannel(address, credentials, args);
}

}  // namespace maximus::rpc
