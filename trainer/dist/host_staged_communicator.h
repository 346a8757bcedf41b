// A communicator for backend memory that a host communicator cannot reach
// (GPU memory with Gloo): each float collective copies its data to the host,
// runs there, and copies the result back. Slower than NCCL (no overlap, two
// copies per call) but it needs no NCCL and runs any number of ranks on one
// GPU, which is how the CUDA path of data-parallel training is checked on a
// single-GPU machine.

#ifndef MAXIMUS_TRAINER_DIST_HOST_STAGED_COMMUNICATOR_H_
#define MAXIMUS_TRAINER_DIST_HOST_STAGED_COMMUNICATOR_H_

#include <memory>

#include "trainer/backend/backend.h"
#include "trainer/dist/communicator.h"

namespace maximus::trainer::dist {

// `host` works on host memory; `backend` owns the memory the returned
// communicator's float collectives are given.
std::unique_ptr<Communicator> MakeHostStagedCommunicator(std::unique_ptr<Communicator> host,
                                                         Backend* backend);

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_HOST_STAGED_COMMUNICATOR_H_
