// DistEnv: where this process stands in a multi-process (data-parallel) run,
// read from the environment variables torchrun and tools/launch.sh set:
// RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT.
// Rank 0 serves the rendezvous store at MASTER_ADDR:MASTER_PORT.
//
//   MAXIMUS_ASSIGN_OR_RETURN(DistEnv env, DistEnvFromEnvironment());
//   LOG(INFO) << DescribeDistEnv(env);

#ifndef MAXIMUS_TRAINER_DIST_DIST_ENV_H_
#define MAXIMUS_TRAINER_DIST_DIST_ENV_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"

namespace maximus::trainer::dist {

// The largest WORLD_SIZE accepted.
inline constexpr int kMaxWorldSize = 4096;

struct DistEnv {
  int rank = 0;
  int world_size = 1;
  // This process's place among those of its machine.
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;

  bool distributed() const { return world_size > 1; }
};

// Reads the variables through `getenv` (nullptr: ::getenv); a variable set
// to "" counts as unset. None set: a single process (world size 1).
// RANK and WORLD_SIZE come together; LOCAL_WORLD_SIZE defaults to
// WORLD_SIZE and LOCAL_RANK to RANK; a world of more than one process needs
// MASTER_ADDR and MASTER_PORT. Anything else (not an integer, out of range,
// one of a pair missing) is INVALID_ARGUMENT naming the variable and its
// value.
absl::StatusOr<DistEnv> DistEnvFromEnvironment(
    std::function<const char*(const char*)> getenv = nullptr);

// "MASTER_ADDR:MASTER_PORT" ("[MASTER_ADDR]:MASTER_PORT" for IPv6), where
// the ranks reach the rendezvous store.
std::string RendezvousAddress(const DistEnv& env);

// For logs: "rank 1 of 2 (local 1 of 2), rendezvous 127.0.0.1:29500", or
// "rank 0 of 1 (local 0 of 1), single process".
std::string DescribeDistEnv(const DistEnv& env);

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_DIST_ENV_H_
