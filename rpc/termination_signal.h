// Graceful stop on SIGTERM or SIGINT. The handler does nothing but write the
// signal number to a pipe (write(2) is async-signal-safe: no lock, no
// allocation); the waiting thread reads it in ordinary code and does the
// real work there.

#ifndef MAXIMUS_RPC_TERMINATION_SIGNAL_H_
#define MAXIMUS_RPC_TERMINATION_SIGNAL_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace maximus::rpc {

// Routes SIGTERM and SIGINT to the pipe that WaitForTerminationSignal reads.
// Idempotent. A signal that arrives after this call and before the wait is
// kept, not lost.
absl::Status InstallTerminationSignalHandlers();

// Blocks until SIGTERM or SIGINT arrives (installing the handlers first if
// needed) and returns its number. Restores the default action of both, so
// that a second signal ends the process at once if the shutdown hangs.
absl::StatusOr<int> WaitForTerminationSignal();

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_TERMINATION_SIGNAL_H_
