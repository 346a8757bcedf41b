// GrpcServer: the one way a Maximus server listens. It binds loopback unless
// told otherwise, refuses a port that is taken, bounds messages, threads and
// streams, serves health checking, reflection and ServerInfoService beside
// the caller's services, and shuts down gracefully (on request or on SIGTERM
// or SIGINT). Reflection (grpc.reflection.v1alpha, for grpcurl and the like)
// cannot be turned off per server: gRPC's reflection plugin registers itself
// for every server of the process. With options.security it serves TLS
// (mutual TLS with a client CA) and refuses calls without its bearer token.
//
//   GrpcServer::Options options;
//   options.address = *ListenAddress(flag_listen, flag_port);
//   options.service_name = "maximus.Foo";
//   GrpcServer server(options);
//   server.AddService(&foo_service);
//   MAXIMUS_RETURN_IF_ERROR(server.Start());
//   server.WaitForTerminationSignal();

#ifndef MAXIMUS_RPC_GRPC_SERVER_H_
#define MAXIMUS_RPC_GRPC_SERVER_H_

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "rpc/server_info_service.h"
#include "rpc/server_security.h"

namespace maximus::rpc {

inline constexpr char kLoopbackHost[] = "127.0.0.1";

// The address a server listens on, from its flags: `listen` ("HOST:PORT",
// "[IPv6]:PORT", or a bare "PORT" on `host`) when it is set, else
// `host`:`port`. Errors name the flag (--listen or --port).
absl::StatusOr<std::string> ListenAddress(absl::string_view listen, int port,
                                          absl::string_view host = kLoopbackHost);

class GrpcServer {
 public:
  struct Options {
    // HOST:PORT. Port 0 picks a free port; port() and address() tell which.
    std::string address = absl::StrCat(kLoopbackHost, ":0");
    // Full name of the server's main service, reported by ServerInfoService.
    std::string service_name;
    // Larger messages fail the call with RESOURCE_EXHAUSTED.
    int max_receive_message_bytes = 4 << 20;
    int max_send_message_bytes = 4 << 20;
    // Threads that serve calls (one per call in flight); calls beyond them
    // fail with RESOURCE_EXHAUSTED rather than queue without bound.
    int max_threads = 256;
    // Calls one client connection may have open at once.
    int max_concurrent_streams = 100;
    // grpc.health.v1.Health: SERVING while running, NOT_SERVING once
    // shutdown begins.
    bool health_check = true;
    // Shutdown() lets calls in flight finish for this long, then cancels them.
    absl::Duration shutdown_grace = absl::Seconds(5);
    // TLS, mutual TLS and a bearer token (see server_security.h); empty:
    // plaintext, no token.
    ServerSecurity security;
  };

  explicit GrpcServer(Options options);
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;
  // Shuts down (see Shutdown()) if still running.
  ~GrpcServer();

  // Before Start(). `service` must outlive the server.
  void AddService(grpc::Service* service);
  // Before Start(). `hook` runs when shutdown begins, before gRPC stops
  // taking calls: services end their long-lived streams there.
  void OnShutdown(std::function<void()> hook);

  // Binds and starts serving. Fails, naming the address, when the address
  // is taken or not local; once only.
  absl::Status Start();

  // The bound port and "HOST:PORT" with it (after a successful Start()).
  int port() const { return port_; }
  const std::string& address() const { return bound_address_; }

  // Blocks until the server has shut down.
  void Wait();

  // Graceful stop: health turns NOT_SERVING, the shutdown hooks run, new
  // calls are refused, calls in flight get until `deadline` and are then
  // cancelled; returns when all have ended. Idempotent, thread-safe.
  void Shutdown(absl::Time deadline);
  // Shutdown with options.shutdown_grace.
  void Shutdown();

  // Blocks until SIGTERM or SIGINT, shuts down gracefully and returns the
  // signal's number. See termination_signal.h.
  absl::StatusOr<int> WaitForTerminationSignal();

 private:
  absl::Status DescribeBindFailure() const;

  const Options options_;
  ServerInfoServiceImpl info_service_;
  std::vector<grpc::Service*> services_;
  std::vector<std::function<void()>> shutdown_hooks_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::string bound_address_;

  absl::Mutex shutdown_mutex_;
  bool shut_down_ ABSL_GUARDED_BY(shutdown_mutex_) = false;
};

}  // namespace maximus::rpc

#endif  // MAXIMUS_RPC_GRPC_SERVER_H_
