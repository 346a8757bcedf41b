// The flags of the trainer's DataService client: TLS and the bearer token a
// secured DataService (--tls_cert, --token_file on the server) asks for.
// Shared by the programs that open --data (main, bench_quality).

#ifndef MAXIMUS_TRAINER_DATA_FLAGS_H_
#define MAXIMUS_TRAINER_DATA_FLAGS_H_

#include "absl/status/statusor.h"
#include "rpc/client_security.h"

namespace maximus::trainer {

// The security the --data_* flags ask for (plaintext when none is set).
// Errors name the flag: an unreadable file, a token or client certificate
// without TLS, a certificate without its key.
absl::StatusOr<rpc::ClientSecurity> DataClientSecurityFromFlags();

// --data_stream_window_kb in bytes (data::RemoteDataSource::Options).
absl::StatusOr<int> DataStreamWindowBytesFromFlags();

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_DATA_FLAGS_H_
