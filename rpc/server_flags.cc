#include "rpc/server_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "rpc/secret_file.h"

ABSL_FLAG(std::string, tls_cert, "",
          "PEM file of the server's TLS certificate (chain); serves TLS, with --tls_key");
ABSL_FLAG(std::string, tls_key, "", "PEM file of the private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM file of the CA that signs client certificates: clients must present one "
          "(mutual TLS)");
ABSL_FLAG(std::string, token_file, "",
          "File holding the bearer token every call must send as "
          "'authorization: Bearer <token>' (needs TLS)");

namespace maximus::rpc {

absl::StatusOr<ServerSecurity> ServerSecurityFromFlags() {
  ServerSecurity security;
  const std::string cert = absl::GetFlag(FLAGS_tls_cert);
  const std::string key = absl::GetFlag(FLAGS_tls_key);
  const std::string client_ca = absl::GetFlag(FLAGS_tls_client_ca);
  const std::string token_file = absl::GetFlag(FLAGS_token_file);
  if (!cert.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.tls_cert_pem, ReadSecretFile("--tls_cert", cert));
  }
  if (!key.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.tls_key_pem, ReadSecretFile("--tls_key", key));
  }
  if (!client_ca.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.tls_client_ca_pem,
                             ReadSecretFile("--tls_client_ca", client_ca));
  }
  if (!token_file.empty()) {
    MAXIMUS_ASSIGN_OR_RETURN(security.token, ReadTokenFile("--token_file", token_file));
  }
  const struct {
    const char* flag;
    const std::string& pem;
  } pems[] = {{"--tls_cert", security.tls_cert_pem},
              {"--tls_key", security.tls_key_pem},
              {"--tls_client_ca", security.tls_client_ca_pem}};
  for (const auto& [flag, pem] : pems) {
    if (!pem.empty() && !absl::StrContains(pem, "-----BEGIN ")) {
      return absl::InvalidArgumentError(absl::StrCat(flag, ": the file is not PEM"));
    }
  }
  MAXIMUS_RETURN_IF_ERROR(security.Validate());
  return security;
}

absl::Status CheckPortFlag(absl::string_view flag, int64_t port, bool allow_any) {
  if (port >= (allow_any ? 0 : 1) && port <= 65535) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--", flag, ": ", port, " is not a port (",
                   allow_any ? "0-65535, 0: any free port" : "1-65535", ")"));
}

absl::StatusOr<int64_t> MebibytesFlag(absl::string_view flag, int64_t mebibytes,
                                      int64_t min_mebibytes, int64_t max_mebibytes) {
  if (mebibytes < min_mebibytes || mebibytes > max_mebibytes) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", mebibytes, " MiB is outside ",
                                                   min_mebibytes, "-", max_mebibytes, " MiB"));
  }
  return mebibytes << 20;
}

std::string SecurityNote(const ServerSecurity& security) {
  if (!security.tls()) return "";
  return absl::StrCat(security.tls_client_ca_pem.empty() ? ", TLS" : ", mutual TLS",
                      security.token.empty() ? "" : " and a bearer token");
}

void SetServerUsage(absl::string_view usage, std::vector<std::string> flag_files) {
  absl::SetProgramUsageMessage(usage);
  absl::FlagsUsageConfig config;
  flag_files.push_back("rpc/server_flags.cc");
  config.contains_help_flags = [flag_files](absl::string_view file) {
    for (const std::string& flag_file : flag_files) {
      if (absl::EndsWith(file, flag_file)) return true;
    }
    return false;
  };
  absl::SetFlagsUsageConfig(config);
}

}  // namespace maximus::rpc
