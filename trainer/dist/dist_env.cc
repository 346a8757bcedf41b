#include "trainer/dist/dist_env.h"

#include <cstdlib>
#include <optional>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace maximus::trainer::dist {
namespace {

using Getenv = std::function<const char*(const char*)>;

// The variable's value; nullopt when unset or empty.
std::optional<std::string> Read(const Getenv& getenv, const char* name) {
  const char* value = getenv(name);
  if (value == nullptr || *value == '\0') return std::nullopt;
  return std::string(value);
}

// `name`'s value as an integer in [min, max]; `what` says why that range.
absl::StatusOr<int> ParseInt(const char* name, const std::string& value, int min, int max,
                             absl::string_view what) {
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=\"", value, "\" is not an integer"));
  }
  if (parsed < min || parsed > max) {
    return absl::InvalidArgumentError(absl::StrCat(name, "=", value, " is out of range: ", what));
  }
  return parsed;
}

}  // namespace

absl::StatusOr<DistEnv> DistEnvFromEnvironment(Getenv getenv) {
  if (getenv == nullptr) getenv = [](const char* name) { return ::getenv(name); };
  const std::optional<std::string> rank = Read(getenv, "RANK");
  const std::optional<std::string> world_size = Read(getenv, "WORLD_SIZE");
  const std::optional<std::string> local_rank = Read(getenv, "LOCAL_RANK");
  const std::optional<std::string> local_world_size = Read(getenv, "LOCAL_WORLD_SIZE");
  const std::optional<std::string> master_addr = Read(getenv, "MASTER_ADDR");
  const std::optional<std::string> master_port = Read(getenv, "MASTER_PORT");

  DistEnv env;
  if (!rank.has_value() || !world_size.has_value()) {
    // Half a launch configuration is a mistake, not a single process.
    const char* present = rank.has_value()               ? "RANK"
                          : world_size.has_value()       ? "WORLD_SIZE"
                          : local_rank.has_value()       ? "LOCAL_RANK"
                          : local_world_size.has_value() ? "LOCAL_WORLD_SIZE"
                                                         : nullptr;
    if (present != nullptr) {
      const char* missing = rank.has_value()         ? "WORLD_SIZE is"
                            : world_size.has_value() ? "RANK is"
                                                     : "RANK and WORLD_SIZE are";
      return absl::InvalidArgumentError(
          absl::StrCat(present, " is set but ", missing,
                       " not: every process of a multi-process run has RANK and WORLD_SIZE (and "
                       "MASTER_ADDR, MASTER_PORT); a single process has none of them"));
    }
  } else {
    MAXIMUS_ASSIGN_OR_RETURN(env.world_size,
                             ParseInt("WORLD_SIZE", *world_size, 1, kMaxWorldSize,
                                      absl::StrCat("must be in [1, ", kMaxWorldSize, "]")));
    MAXIMUS_ASSIGN_OR_RETURN(
        env.rank, ParseInt("RANK", *rank, 0, env.world_size - 1,
                           absl::StrCat("must be in [0, WORLD_SIZE) = [0, ", env.world_size, ")")));
    env.local_world_size = env.world_size;
    if (local_world_size.has_value()) {
      MAXIMUS_ASSIGN_OR_RETURN(
          env.local_world_size,
          ParseInt("LOCAL_WORLD_SIZE", *local_world_size, 1, env.world_size,
                   absl::StrCat("must be in [1, WORLD_SIZE] = [1, ", env.world_size, "]")));
    }
    const std::string range =
        absl::StrCat("must be in [0, LOCAL_WORLD_SIZE) = [0, ", env.local_world_size, ")");
    if (local_rank.has_value()) {
      MAXIMUS_ASSIGN_OR_RETURN(
          env.local_rank, ParseInt("LOCAL_RANK", *local_rank, 0, env.local_world_size - 1, range));
    } else {
      env.local_rank = env.rank;
      if (env.local_rank >= env.local_world_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("LOCAL_RANK is not set and defaults to RANK=", env.rank,
                         ", which is out of range: ", range, "; set LOCAL_RANK"));
      }
    }
  }

  if (env.distributed() && (!master_addr.has_value() || !master_port.has_value())) {
    const char* missing = master_addr.has_value()   ? "MASTER_PORT is"
                          : master_port.has_value() ? "MASTER_ADDR is"
                                                    : "MASTER_ADDR and MASTER_PORT are";
    return absl::InvalidArgumentError(
        absl::StrCat("WORLD_SIZE=", env.world_size,
                     " needs MASTER_ADDR and MASTER_PORT (where rank 0 serves the rendezvous), "
                     "but ",
                     missing, " not set"));
  }
  if (master_addr.has_value()) env.master_addr = *master_addr;
  if (master_port.has_value()) {
    MAXIMUS_ASSIGN_OR_RETURN(
        env.master_port, ParseInt("MASTER_PORT", *master_port, 1, 65535, "must be in [1, 65535]"));
  }
  return env;
}

std::string RendezvousAddress(const DistEnv& env) {
  if (absl::StrContains(env.master_addr, ':')) {
    return absl::StrCat("[", env.master_addr, "]:", env.master_port);
  }
  return absl::StrCat(env.master_addr, ":", env.master_port);
}

std::string DescribeDistEnv(const DistEnv& env) {
  return absl::StrCat(
      "rank ", env.rank, " of ", env.world_size, " (local ", env.local_rank, " of ",
      env.local_world_size, "), ",
      env.distributed() ? absl::StrCat("rendezvous ", RendezvousAddress(env)) : "single process");
}

}  // namespace maximus::trainer::dist
