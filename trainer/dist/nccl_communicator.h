// The collectives between GPUs, over NCCL: one rank per device, each with
// its own CUDA backend (CudaBackend::Options::device), in one process or
// several, on one host or several.
//
// The float collectives run on the backend's stream (Backend::NativeStream)
// and return once issued, ordered with the backend's ops like any of them;
// a started reduction runs on a stream of its own beside them. The host
// collectives wait for their result, and so are where a stopped or stalled
// peer shows: every host wait, like the communicator's creation, gives up
// after `timeout` (DEADLINE_EXCEEDED) or at NCCL's first asynchronous error
// (UNAVAILABLE), aborting the communicator so that nothing left on the
// device's streams waits for the peer any longer. After the first failure
// every later call reports it.
//
// Not thread-safe: call each rank's communicator from the thread that drives
// its backend.

#ifndef MAXIMUS_TRAINER_DIST_NCCL_COMMUNICATOR_H_
#define MAXIMUS_TRAINER_DIST_NCCL_COMMUNICATOR_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/backend/backend.h"
#include "trainer/dist/communicator.h"

namespace maximus::trainer::dist {

struct NcclOptions {
  // Bound on the ranks' connection and on every wait of the host for a
  // collective (which includes the backend's ops issued before it).
  absl::Duration timeout = absl::Minutes(5);
};

// Passes rank 0's NCCL id to the others (the caller does it over the
// rendezvous store): rank 0 passes its serialized id and gets it back; the
// other ranks pass "" and get rank 0's.
using ShareNcclId = std::function<absl::StatusOr<std::string>(const std::string&)>;

// Connects rank `rank` of `world_size`, each rank on its own device, through
// `backend`'s stream (a CUDA backend, which must outlive the communicator).
// FAILED_PRECONDITION for a backend without a stream (the CPU's: use Gloo),
// DEADLINE_EXCEEDED when the ranks do not all join within the timeout.
absl::StatusOr<std::unique_ptr<Communicator>> MakeNcclCommunicator(int rank, int world_size,
                                                                   ShareNcclId share_id,
                                                                   Backend* backend,
                                                                   const NcclOptions& options);

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_NCCL_COMMUNICATOR_H_
