#include "trainer/dist/process_group.h"

#include <unistd.h>

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "trainer/dist/gloo_communicator.h"
#include "trainer/dist/host_staged_communicator.h"
#include "trainer/dist/nccl_communicator.h"

namespace maximus::trainer::dist {
namespace {

bool IsLoopback(const std::string& host) {
  return host == "localhost" || host == "::1" || absl::StartsWith(host, "127.");
}

std::string ThisHost() {
  char name[256] = {};
  if (gethostname(name, sizeof(name) - 1) != 0) return "127.0.0.1";
  return name;
}

}  // namespace

ProcessGroup::~ProcessGroup() {
  // The communicator first: its connections go before the store's server.
  communicator_.reset();
  client_.reset();
  server_.reset();
}

absl::StatusOr<std::unique_ptr<ProcessGroup>> ProcessGroup::Join(
    const DistEnv& env, Backend* backend, const ProcessGroupOptions& options) {
  const std::string& kind = options.communicator;
  const bool cuda = backend->name() == "cuda";
  if (kind != "auto" && kind != "gloo" && kind != "nccl") {
    return absl::InvalidArgumentError(
        absl::StrCat("--communicator=", kind, ": expected auto, gloo or nccl"));
  }
  if (kind == "nccl" && !cuda) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--communicator=nccl needs the cuda backend; the ", backend->name(), " backend uses gloo"));
  }
  if (!cuda && backend->name() != "cpu") {
    return absl::UnimplementedError(
        absl::StrCat("no communicator for the ", backend->name(), " backend"));
  }
  std::unique_ptr<ProcessGroup> group(new ProcessGroup(env));
  if (!env.distributed()) {
    group->communicator_ = MakeLocalCommunicator();
    return group;
  }
  const std::string address = RendezvousAddress(env);
  if (env.rank == 0) {
    RendezvousServer::Options server_options;
    server_options.address = address;
    absl::StatusOr<std::unique_ptr<RendezvousServer>> server =
        RendezvousServer::Start(server_options);
    if (!server.ok()) {
      return absl::Status(server.status().code(),
                          absl::StrCat("rank 0 serves the rendezvous at MASTER_ADDR:MASTER_PORT = ",
                                       address, ": ", server.status().message()));
    }
    group->server_ = *std::move(server);
  }
  MAXIMUS_ASSIGN_OR_RETURN(group->client_,
                           RendezvousClient::Connect(address, options.connect_timeout));
  if (cuda && kind != "gloo") {
    RendezvousClient* store = group->client_.get();
    const absl::Duration timeout = options.connect_timeout;
    auto share_id = [store, rank = env.rank, timeout](const std::string& mine)
        -> absl::StatusOr<std::string> {
      if (rank == 0) MAXIMUS_RETURN_IF_ERROR(store->Set("nccl/unique_id", mine));
      return store->Get("nccl/unique_id", timeout);
    };
    NcclOptions nccl;
    nccl.timeout = options.timeout;
    MAXIMUS_ASSIGN_OR_RETURN(group->communicator_,
                             MakeNcclCommunicator(env.rank, env.world_size, share_id, backend, nccl));
    return group;
  }
  GlooOptions gloo;
  gloo.timeout = options.timeout;
  gloo.connect_timeout = options.connect_timeout;
  gloo.hostname = !options.gloo_hostname.empty() ? options.gloo_hostname
                  : IsLoopback(env.master_addr)  ? "127.0.0.1"
                                                 : ThisHost();
  MAXIMUS_ASSIGN_OR_RETURN(
      group->communicator_,
      MakeGlooCommunicator(env.rank, env.world_size, group->client_.get(), gloo));
  if (cuda) {
    group->communicator_ = MakeHostStagedCommunicator(std::move(group->communicator_), backend);
  }
  return group;
}

}  // namespace maximus::trainer::dist
