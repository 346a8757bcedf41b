// The gRPC EmbeddingService over an EmbeddingIndex and (when the server has a
// checkpoint) an Embedder, and the server that hosts it beside
// ServerInfoService, health checking and reflection.

#ifndef MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_SERVICE_IMPL_H_
#define MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_SERVICE_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "embedding_service/embedder.h"
#include "embedding_service/embedding_index.h"
#include "proto/embedding.grpc.pb.h"
#include "rpc/grpc_server.h"

namespace maximus::embedding {

class EmbeddingServiceImpl final : public v1::EmbeddingService::Service {
 public:
  struct Limits {
    // Texts of one Embed call, one Upsert message, and their size.
    int64_t max_texts = 64;
    int64_t max_text_bytes = 64 << 10;
  };

  // `embedder` may be null (no checkpoint: Embed and text queries fail with
  // FAILED_PRECONDITION). Both must outlive the service.
  // `scan_device` says where stage 1 runs, for Stats.
  EmbeddingServiceImpl(EmbeddingIndex* index, Embedder* embedder, const Limits& limits,
                       std::string scan_device);

  grpc::Status Embed(grpc::ServerContext* context, const v1::EmbedRequest* request,
                     v1::EmbedResponse* response) override;
  grpc::Status Upsert(grpc::ServerContext* context,
                      grpc::ServerReaderWriter<v1::UpsertResponse, v1::UpsertRequest>* stream) override;
  grpc::Status Delete(grpc::ServerContext* context, const v1::DeleteRequest* request,
                      v1::DeleteResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context, const v1::GetRequest* request,
                   v1::GetResponse* response) override;
  grpc::Status Search(grpc::ServerContext* context, const v1::SearchRequest* request,
                      v1::SearchResponse* response) override;
  grpc::Status Stats(grpc::ServerContext* context, const v1::StatsRequest* request,
                     v1::StatsResponse* response) override;

 private:
  // Embeds texts (each checked against the limits; errors name
  // `field`[i]); the pooled, unnormalised states.
  absl::StatusOr<std::vector<std::vector<float>>> EmbedTexts(const std::vector<std::string>& texts,
                                                             Pooling pooling,
                                                             absl::string_view field);
  // One Upsert message as records, embedding the entries given as text.
  absl::StatusOr<std::vector<VectorRecord>> RecordsOf(const v1::UpsertRequest& request);

  EmbeddingIndex* const index_;
  Embedder* const embedder_;
  const Limits limits_;
  const std::string scan_device_;
};

// A running EmbeddingService: the index, the embedder and the server.
class EmbeddingServer {
 public:
  struct Options {
    // Port 0: any free port, see port().
    std::string address = absl::StrCat(rpc::kLoopbackHost, ":0");
    std::string data_dir;
    // Empty: no embedder; the index then needs `dims` (or an existing index).
    std::string checkpoint;
    std::string tokenizer;  // Empty: <checkpoint>/tokenizer.json.
    // Also where stage 1 of searches runs: "auto" and "cuda" scan on the
    // GPU when one is usable ("cuda" fails without one), "cpu" never.
    Embedder::Options embedder;
    // Of a new index without a checkpoint; with one, 0 or the model's hidden size.
    int64_t dims = 0;
    ElementType vector_type = ElementType::kFloat32;
    ShardAssignment shard;
    IndexLimits index_limits;
    EmbeddingServiceImpl::Limits limits;
    int64_t max_request_bytes = 64 << 20;
    absl::Duration shutdown_grace = absl::Seconds(5);
    rpc::ServerSecurity security;
  };
  static absl::StatusOr<std::unique_ptr<EmbeddingServer>> Start(const Options& options);

  int port() const { return grpc_server_->port(); }
  const std::string& address() const { return grpc_server_->address(); }
  const EmbeddingIndex& index() const { return *index_; }
  const Embedder* embedder() const { return embedder_.get(); }
  // "cpu (AVX2)", "cpu (scalar)" or "cuda (cuBLAS)".
  const std::string& scan_device() const { return scan_device_; }
  void Shutdown() { grpc_server_->Shutdown(); }
  absl::StatusOr<int> WaitForTerminationSignal() {
    return grpc_server_->WaitForTerminationSignal();
  }

 private:
  EmbeddingServer() = default;

  std::unique_ptr<Embedder> embedder_;
  std::unique_ptr<EmbeddingIndex> index_;
  std::string scan_device_;
  std::unique_ptr<EmbeddingServiceImpl> service_;
  // Last: destroyed (and so shut down) first, while the service still exists.
  std::unique_ptr<rpc::GrpcServer> grpc_server_;
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_SERVICE_IMPL_H_
