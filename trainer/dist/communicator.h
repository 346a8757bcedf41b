// Communicator: the collectives of a data-parallel run, one process per
// device, over Gloo (CPU processes, TCP) or NCCL (GPUs). Every rank calls the
// same collectives in the same order with the same sizes; a rank that dies or
// stalls makes the others' calls fail within the communicator's timeout
// instead of hanging.
//
// Float collectives work on backend memory (host memory for the CPU backend,
// device memory for CUDA) and are ordered with the backend's ops: they see
// what ops issued before them wrote, and ops issued after them see their
// results.

#ifndef MAXIMUS_TRAINER_DIST_COMMUNICATOR_H_
#define MAXIMUS_TRAINER_DIST_COMMUNICATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace maximus::trainer::dist {

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual std::string name() const = 0;  // "local", "gloo", "nccl"
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // data[0, n) = its sum over ranks.
  virtual absl::Status AllReduceSum(float* data, int64_t n) = 0;
  // `data` holds world_size() consecutive chunks, rank r's counts[r]
  // elements long; each rank brings its own chunk and receives the others'.
  virtual absl::Status AllGatherInPlace(float* data, absl::Span<const int64_t> counts) = 0;
  // data[0, n) = root's.
  virtual absl::Status Broadcast(float* data, int64_t n, int root) = 0;

  // AllReduceSum started once the backend ops issued so far are done, and
  // run beside the ops issued after (the overlap of gradient reduction with
  // the backward). WaitStarted() orders everything after all started ones
  // and reports the first error. `data` must not be touched in between.
  virtual absl::Status StartAllReduceSum(float* data, int64_t n) = 0;
  virtual absl::Status WaitStarted() = 0;

  // Small host values: sums of doubles, and one 64-bit value from each rank.
  virtual absl::Status AllReduceSumHost(absl::Span<double> values) = 0;
  virtual absl::StatusOr<std::vector<uint64_t>> AllGatherHost(uint64_t value) = 0;
  virtual absl::Status Barrier() = 0;
};

// The communicator of a single process (world size 1): every collective is
// the identity.
std::unique_ptr<Communicator> MakeLocalCommunicator();

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_COMMUNICATOR_H_
