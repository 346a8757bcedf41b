// ProcessGroup: this process's place in a data-parallel run, from the
// environment torchrun sets (dist_env.h). Rank 0 serves the rendezvous store
// at MASTER_ADDR:MASTER_PORT; every rank connects to it, and the ranks build
// their communicator through it: Gloo for the CPU backend, NCCL for CUDA
// (or Gloo with host staging, which runs several ranks on one GPU).
// A single process (no RANK/WORLD_SIZE) gets the local communicator and no
// store.

#ifndef MAXIMUS_TRAINER_DIST_PROCESS_GROUP_H_
#define MAXIMUS_TRAINER_DIST_PROCESS_GROUP_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/backend/backend.h"
#include "trainer/dist/communicator.h"
#include "trainer/dist/dist_env.h"
#include "trainer/dist/rendezvous_store.h"

namespace maximus::trainer::dist {

struct ProcessGroupOptions {
  // "auto": Gloo for the CPU backend, NCCL for CUDA; "gloo": Gloo for
  // either (GPU memory staged through the host, host_staged_communicator.h);
  // "nccl": CUDA only.
  std::string communicator = "auto";
  // Bound on every collective.
  absl::Duration timeout = absl::Minutes(5);
  // Bound on the wait for rank 0's store and for every rank to connect.
  absl::Duration connect_timeout = absl::Minutes(30);
  // The address Gloo binds on this host; empty: 127.0.0.1 when MASTER_ADDR
  // is a loopback address, else MASTER_ADDR's view of this host (the host
  // name).
  std::string gloo_hostname;
};

class ProcessGroup {
 public:
  // Joins the group of `env` for `backend` (the backend's name picks the
  // communicator).
  static absl::StatusOr<std::unique_ptr<ProcessGroup>> Join(const DistEnv& env, Backend* backend,
                                                           const ProcessGroupOptions& options);
  ~ProcessGroup();

  const DistEnv& env() const { return env_; }
  Communicator* communicator() { return communicator_.get(); }
  // The rendezvous store (null for a single process), for the ranks' other
  // agreements (e.g. that rank 0 has prepared the data).
  RendezvousClient* store() { return client_.get(); }

 private:
  explicit ProcessGroup(const DistEnv& env) : env_(env) {}

  DistEnv env_;
  std::unique_ptr<RendezvousServer> server_;  // Rank 0's.
  std::unique_ptr<RendezvousClient> client_;
  std::unique_ptr<Communicator> communicator_;
};

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_PROCESS_GROUP_H_
