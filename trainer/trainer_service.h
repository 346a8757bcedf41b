// The gRPC TrainerService over a running Trainer (status, live metrics,
// checkpoint and stop requests), and the server that hosts it beside
// ServerInfoService, health checking and reflection.

#ifndef MAXIMUS_TRAINER_TRAINER_SERVICE_H_
#define MAXIMUS_TRAINER_TRAINER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/trainer.grpc.pb.h"
#include "rpc/grpc_server.h"
#include "trainer/trainer.h"

namespace maximus::trainer {

// The proto form of a Trainer's status.
TrainingStatus ToProto(const TrainerStatus& status);

class TrainerServiceImpl final : public TrainerService::Service {
 public:
  // `trainer` must outlive the service.
  explicit TrainerServiceImpl(Trainer* trainer);

  grpc::Status GetStatus(grpc::ServerContext* context, const GetStatusRequest* request,
                         TrainingStatus* response) override;
  grpc::Status StreamMetrics(grpc::ServerContext* context, const StreamMetricsRequest* request,
                             grpc::ServerWriter<MetricSample>* writer) override;
  grpc::Status SaveCheckpoint(grpc::ServerContext* context, const SaveCheckpointRequest* request,
                              SaveCheckpointResponse* response) override;
  grpc::Status Stop(grpc::ServerContext* context, const StopRequest* request,
                    StopResponse* response) override;

  // Open streams and waiting Stop calls end with UNAVAILABLE within a poll
  // interval.
  void BeginShutdown() { stopping_ = true; }

  // How often waiting calls look at cancellation and shutdown.
  static constexpr absl::Duration kPollInterval = absl::Milliseconds(100);
  // SaveCheckpoint's wait when the call has no deadline.
  static constexpr absl::Duration kDefaultCheckpointWait = absl::Minutes(10);

 private:
  Trainer* const trainer_;
  std::atomic<bool> stopping_{false};
};

// A TrainerService server for one Trainer.
class TrainerServer {
 public:
  // `address`: HOST:PORT, e.g. "127.0.0.1:PORT"; port 0 picks a free port
  // (see port()).
  // `trainer` must outlive the server. `security`: TLS and bearer token
  // (rpc/server_security.h); empty: plaintext, no token.
  static absl::StatusOr<std::unique_ptr<TrainerServer>> Start(
      Trainer* trainer, const std::string& address, const rpc::ServerSecurity& security = {});

  int port() const { return grpc_server_->port(); }
  // Ends open streams, waits briefly for calls in flight, then stops.
  // Idempotent.
  void Shutdown() { grpc_server_->Shutdown(); }

 private:
  TrainerServer() = default;

  std::unique_ptr<TrainerServiceImpl> service_;
  // Last: destroyed (and so shut down) first, while the service still exists.
  std::unique_ptr<rpc::GrpcServer> grpc_server_;
};

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_TRAINER_SERVICE_H_
