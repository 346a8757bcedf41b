// Reading certificates, keys and tokens from files, with errors that name
// the flag and the file.

#ifndef MAXIMUS_RPC_SECRET_FILE_H_
#define MAXIMUS_RPC_SECRET_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::rpc {

// The whole file at `path`; `what` (e.g. "--tls_cert") prefixes errors.
absl::StatusOr<std::string> ReadSecretFile(absl::string_view what, absl::string_view path);

// A token file: its text without surrounding whitespace (a trailing newline
// is usual). Empty or multi-line tokens are refused.
absl::StatusOr<std::string> ReadTokenFile(absl::string_view what, absl::string_view path);

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_SECRET_FILE_H_
