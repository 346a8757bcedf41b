// The rendezvous store of a multi-process run: a key-value store that rank 0
// serves over gRPC (proto/rendezvous.proto) and every rank uses to publish
// small strings (its address, a communicator id) and wait for the others'.
// Keys are set once, so a rank that retries a Set after a lost answer, or
// sets what another rank already set identically, does no harm.
//
//   // Rank 0:
//   RendezvousServer::Options options;
//   options.address = absl::StrCat("0.0.0.0:", env.master_port);
//   MAXIMUS_ASSIGN_OR_RETURN(auto server, RendezvousServer::Start(options));
//   // Every rank:
//   MAXIMUS_ASSIGN_OR_RETURN(auto client, RendezvousClient::Connect(
//       RendezvousAddress(env), absl::Minutes(5)));
//   MAXIMUS_ASSIGN_OR_RETURN(std::vector<std::string> addresses,
//       ExchangeAll(*client, "addr", env.rank, env.world_size, mine, absl::Minutes(5)));

#ifndef MAXIMUS_TRAINER_DIST_RENDEZVOUS_STORE_H_
#define MAXIMUS_TRAINER_DIST_RENDEZVOUS_STORE_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "proto/rendezvous.grpc.pb.h"
#include "rpc/grpc_server.h"

namespace maximus::trainer::dist {

class RendezvousService;

// Serves the store; rank 0 runs it. Plaintext and without a token, like
// torchrun's store: bind it to loopback or a trusted network only.
class RendezvousServer {
 public:
  struct Options {
    // HOST:PORT; port 0 picks a free one (see port()).
    std::string address = "127.0.0.1:29500";
    // Beyond these, Set fails: RESOURCE_EXHAUSTED for keys, INVALID_ARGUMENT
    // for sizes.
    int64_t max_keys = 4096;
    int64_t max_key_bytes = 256;
    int64_t max_value_bytes = 1 << 20;
    // The longest one Get waits, whatever timeout it asks for.
    absl::Duration max_wait = absl::Minutes(30);
    // Threads serving calls; a waiting Get holds one, so at least the world
    // size (gRPC starts them as needed).
    int max_threads = 2 * 4096;
  };

  // Fails when the options are out of range or the address cannot be
  // bound (taken, not local), naming it.
  static absl::StatusOr<std::unique_ptr<RendezvousServer>> Start(Options options);

  RendezvousServer(const RendezvousServer&) = delete;
  RendezvousServer& operator=(const RendezvousServer&) = delete;
  ~RendezvousServer();  // Shuts down.

  int port() const { return grpc_server_->port(); }
  // "HOST:PORT" as bound.
  const std::string& address() const { return grpc_server_->address(); }

  // Ends waiting Gets (CANCELLED), refuses new calls and returns once every
  // call has ended. Idempotent.
  void Shutdown();

 private:
  RendezvousServer() = default;

  std::unique_ptr<RendezvousService> service_;
  // After service_: destroyed, and so shut down, first.
  std::unique_ptr<rpc::GrpcServer> grpc_server_;
};

// A rank's connection to the store. Thread-safe.
class RendezvousClient {
 public:
  // Connects lazily: rank 0 may start later than this rank, so calls retry
  // UNAVAILABLE with a short backoff; Set for up to `timeout`, Get for its
  // own timeout. Fails only on an empty address or a timeout that is not
  // positive.
  static absl::StatusOr<std::unique_ptr<RendezvousClient>> Connect(const std::string& address,
                                                                   absl::Duration timeout);

  const std::string& address() const { return address_; }

  // Sets `key` once: setting it again to the same value is OK, to another
  // value FAILED_PRECONDITION.
  absl::Status Set(const std::string& key, const std::string& value);
  // Waits up to `timeout` for `key` to be set (DEADLINE_EXCEEDED after it).
  absl::StatusOr<std::string> Get(const std::string& key, absl::Duration timeout);
  // The values of `keys`, in order, all within `timeout`.
  absl::StatusOr<std::vector<std::string>> GetAll(const std::vector<std::string>& keys,
                                                  absl::Duration timeout);

 private:
  RendezvousClient(std::string address, absl::Duration timeout,
                   std::shared_ptr<grpc::Channel> channel);

  // Makes attempts (given the time each starts and the deadline) until one
  // ends in something other than UNAVAILABLE or `timeout` has passed; the
  // error names the call, the key and the address.
  absl::Status Call(absl::string_view call, const std::string& key, absl::Duration timeout,
                    absl::FunctionRef<grpc::Status(absl::Time, absl::Time)> attempt);
  // "rendezvous store at ADDRESS, CALL of key KEY", to begin error messages.
  std::string Context(absl::string_view call, absl::string_view key) const;

  const std::string address_;
  const absl::Duration timeout_;
  const std::shared_ptr<grpc::Channel> channel_;
  const std::unique_ptr<::maximus::dist::v1::Rendezvous::Stub> stub_;
};

// All-gathers one small string per rank: sets "<prefix>/<rank>" to `mine`,
// then returns the values of "<prefix>/0" .. "<prefix>/<world_size - 1>".
// The Set retries as RendezvousClient::Set does; the Gets wait until
// `timeout` after the start. Use a fresh prefix for each exchange. Every rank
// gets every rank's key: world_size² calls in all.
absl::StatusOr<std::vector<std::string>> ExchangeAll(RendezvousClient& client,
                                                     const std::string& prefix, int rank,
                                                     int world_size, const std::string& mine,
                                                     absl::Duration timeout);

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_RENDEZVOUS_STORE_H_
