#include "trainer/data_flags.h"

#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

ABSL_FLAG(bool, data_tls, false,
          "Connect to the DataServices over TLS (verified by the system's root certificates "
          "unless --data_tls_ca is given)");
ABSL_FLAG(std::string, data_tls_ca, "",
          "PEM of the CA that signed the DataServices' certificates (implies --data_tls)");
ABSL_FLAG(std::string, data_tls_cert, "",
          "This client's certificate (PEM), for DataServices that require mutual TLS");
ABSL_FLAG(std::string, data_tls_key, "", "The key (PEM) of --data_tls_cert");
ABSL_FLAG(std::string, data_token_file, "",
          "File holding the bearer token the DataServices require (needs TLS)");
ABSL_FLAG(std::string, data_tls_server_name, "",
          "Name the servers' certificates are checked against instead of the dialled host");
ABSL_FLAG(int64_t, data_stream_window_kb, 0,
          "KiB of each DataService stream the server may send ahead of the trainer (fixed; "
          "0: gRPC's default, grown with the connection's bandwidth-delay product)");

namespace maximus::trainer {

absl::StatusOr<int> DataStreamWindowBytesFromFlags() {
  const int64_t kib = absl::GetFlag(FLAGS_data_stream_window_kb);
  if (kib < 0 || kib > 1024 * 1024) {
    return absl::InvalidArgumentError(
        absl::StrCat("--data_stream_window_kb: ", kib, " is not in [0, 1048576]"));
  }
  return static_cast<int>(kib * 1024);
}

absl::StatusOr<rpc::ClientSecurity> DataClientSecurityFromFlags() {
  absl::StatusOr<rpc::ClientSecurity> security = rpc::ClientSecurity::FromFiles(
      absl::GetFlag(FLAGS_data_tls_ca), absl::GetFlag(FLAGS_data_tls_cert),
      absl::GetFlag(FLAGS_data_tls_key), absl::GetFlag(FLAGS_data_token_file));
  if (!security.ok()) {
    return absl::Status(security.status().code(),
                        absl::StrCat("--data_*: ", security.status().message()));
  }
  security->tls = security->tls || absl::GetFlag(FLAGS_data_tls);
  security->tls_server_name = absl::GetFlag(FLAGS_data_tls_server_name);
  if (!security->token.empty() && !security->tls) {
    return absl::InvalidArgumentError(
        "--data_token_file: a bearer token is only sent over TLS (add --data_tls or "
        "--data_tls_ca)");
  }
  if (security->tls_cert_pem.empty() != security->tls_key_pem.empty()) {
    return absl::InvalidArgumentError("--data_tls_cert and --data_tls_key go together");
  }
  return security;
}

}  // namespace maximus::trainer
