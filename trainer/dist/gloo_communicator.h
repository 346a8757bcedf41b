// GlooCommunicator: the collectives between CPU processes, over Gloo's TCP
// transport (Debian's libgloo). The ranks find each other through the
// rendezvous store rank 0 serves (rendezvous_store.h). Gloo runs every
// collective on one worker thread of this class, in the order they were
// issued, so a started reduction overlaps the caller's work; each collective
// fails after `timeout` (or at once when a peer's connection drops) instead
// of hanging, and after the first failure every later call reports it.

#ifndef MAXIMUS_TRAINER_DIST_GLOO_COMMUNICATOR_H_
#define MAXIMUS_TRAINER_DIST_GLOO_COMMUNICATOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "trainer/dist/communicator.h"
#include "trainer/dist/rendezvous_store.h"

namespace maximus::trainer::dist {

struct GlooOptions {
  // The address this rank's transport binds and its peers dial: loopback
  // for a run on one machine, this host's address across machines.
  std::string hostname = "127.0.0.1";
  // Bound on every collective.
  absl::Duration timeout = absl::Minutes(5);
  // Bound on the wait for every rank to connect (ranks may start far apart).
  absl::Duration connect_timeout = absl::Minutes(30);
  // Keys of the store this communicator uses (distinct per communicator).
  std::string store_prefix = "gloo";
};

// Connects rank `rank` of `world_size` with the others. The memory of the
// float collectives is host memory (the CPU backend's).
absl::StatusOr<std::unique_ptr<Communicator>> MakeGlooCommunicator(int rank, int world_size,
                                                                  RendezvousClient* store,
                                                                  const GlooOptions& options);

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_GLOO_COMMUNICATOR_H_
