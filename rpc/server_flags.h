// The flags every server shares, defined once so that each server has the
// same ones: --tls_cert, --tls_key, --tls_client_ca, --token_file (files
// only: a secret given as a flag value would show in `ps` and shell
// history). Plus checks of numeric flags and --help set to list a program's
// own flags.

#ifndef MAXIMUS_RPC_SERVER_FLAGS_H_
#define MAXIMUS_RPC_SERVER_FLAGS_H_

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/declare.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "rpc/server_security.h"

ABSL_DECLARE_FLAG(std::string, tls_cert);
ABSL_DECLARE_FLAG(std::string, tls_key);
ABSL_DECLARE_FLAG(std::string, tls_client_ca);
ABSL_DECLARE_FLAG(std::string, token_file);

namespace maximus::rpc {

// Reads the files the security flags name and checks that they fit
// together. Errors name the flag and the file.
absl::StatusOr<ServerSecurity> ServerSecurityFromFlags();

// A TCP port from flag `flag`: 1-65535, or 0 (any free port) when
// `allow_any` is set.
absl::Status CheckPortFlag(absl::string_view flag, int64_t port, bool allow_any = true);

// `mebibytes` from flag `flag` in bytes, refused unless in
// [min_mebibytes, max_mebibytes] (so never overflowing).
absl::StatusOr<int64_t> MebibytesFlag(absl::string_view flag, int64_t mebibytes,
                                      int64_t min_mebibytes, int64_t max_mebibytes);

// For a server's start line: "" (plaintext), ", TLS", ", mutual TLS", each
// with " and a bearer token" when one is set.
std::string SecurityNote(const ServerSecurity& security);

// Sets the usage message and makes --help list the flags defined in
// `flag_files` (e.g. {"tokenizer/server.cc"}: the program's own file and any
// flag library it links) and the shared server flags. Before
// absl::ParseCommandLine.
void SetServerUsage(absl::string_view usage, std::vector<std::string> flag_files);

// The value of a flag check, or: prints "<program>: <message>" and exits with
// status 2 (a usage error). For a program's checks at start, before it has
// anything to clean up.
template <typename T>
T FlagValueOrExit(absl::string_view program, absl::StatusOr<T> value) {
  if (!value.ok()) {
    absl::FPrintF(stderr, "%s: %s\n", program, value.status().message());
    std::exit(2);
  }
  return *std::move(value);
}

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_SERVER_FLAGS_H_
