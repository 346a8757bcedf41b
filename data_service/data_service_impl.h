// The gRPC DataService over a token store's open shards, and the server that
// hosts it beside ServerInfoService, health checking and reflection.

#ifndef MAXIMUS_DATA_SERVICE_DATA_SERVICE_IMPL_H_
#define MAXIMUS_DATA_SERVICE_DATA_SERVICE_IMPL_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "data_service/document_index.h"
#include "data_service/local_document_source.h"
#include "data_service/token_store.h"
#include "proto/data.grpc.pb.h"
#include "rpc/grpc_server.h"
#include "tokenizer/tokenizer.h"

namespace maximus::data {

class DataServiceImpl final : public DataService::Service {
 public:
  // All pointers must outlive the service.
  DataServiceImpl(TokenStore* store, DocumentIndex* index, const tokenizer::Tokenizer* tokenizer,
                  int32_t eos_id, int64_t max_request_bytes, size_t chunk_bytes);

  grpc::Status Ingest(grpc::ServerContext* context, grpc::ServerReader<IngestRequest>* reader,
                      IngestResponse* response) override;
  grpc::Status StreamBatches(grpc::ServerContext* context, const StreamBatchesRequest* request,
                             grpc::ServerWriter<PackedBatch>* writer) override;
  grpc::Status StreamDocuments(grpc::ServerContext* context, const StreamDocumentsRequest* request,
                               grpc::ServerWriter<DocumentChunk>* writer) override;
  grpc::Status GetStats(grpc::ServerContext* context, const GetStatsRequest* request,
                        StoreStats* response) override;
  grpc::Status ListShards(grpc::ServerContext* context, const ListShardsRequest* request,
                          ShardList* response) override;

  // Open streams end with UNAVAILABLE at their next message, so that clients
  // resume elsewhere (or after a restart) instead of waiting.
  void BeginShutdown() { stopping_ = true; }

 private:
  // Turns one request message into documents; errors name the message and
  // the document.
  absl::StatusOr<std::vector<Document>> BuildDocuments(const IngestRequest& request,
                                                       int64_t message) const;

  TokenStore* const store_;
  DocumentIndex* const index_;
  const tokenizer::Tokenizer* const tokenizer_;
  const int32_t eos_id_;
  const int64_t max_request_bytes_;
  const size_t chunk_bytes_;
  LocalDocumentSource source_;
  std::atomic<bool> stopping_{false};
};

// A running DataService: the store, its index, the tokenizer and the server.
class DataServer {
 public:
  struct Options {
    // Port 0: any free port, see port().
    std::string address = absl::StrCat(rpc::kLoopbackHost, ":0");
    std::string data_dir;
    // Shards of the store to serve; empty: all.
    std::vector<int> shards;
    // Shard count of a new store (one is created if data_dir holds none and
    // every shard is served).
    int num_shards = 4;
    int64_t max_request_bytes = 64 << 20;
    // StreamDocuments sends a chunk when it holds this many bytes.
    size_t chunk_bytes = 256 << 10;
    // Documents are served from memory if they take at most this much.
    int64_t cache_bytes = kDefaultCacheBytes;
    // How long Shutdown waits for calls in flight before cancelling them.
    absl::Duration shutdown_grace = absl::Seconds(5);
    // TLS and bearer token; empty: plaintext, no token.
    rpc::ServerSecurity security;
  };
  static absl::StatusOr<std::unique_ptr<DataServer>> Start(
      std::shared_ptr<const tokenizer::Tokenizer> tokenizer, const Options& options);

  int port() const { return grpc_server_->port(); }
  // HOST:PORT with the bound port.
  const std::string& address() const { return grpc_server_->address(); }
  const TokenStore& store() const { return *store_; }
  int64_t documents() const { return index_->documents(); }
  int64_t cached_bytes() const { return index_->cached_bytes(); }
  void Wait() { grpc_server_->Wait(); }
  // Ends open streams, waits for calls in flight up to shutdown_grace.
  // Idempotent.
  void Shutdown() { grpc_server_->Shutdown(); }
  // Blocks until SIGTERM or SIGINT, then shuts down; returns the signal.
  absl::StatusOr<int> WaitForTerminationSignal() {
    return grpc_server_->WaitForTerminationSignal();
  }

 private:
  DataServer() = default;

  std::shared_ptr<const tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<TokenStore> store_;
  std::unique_ptr<DocumentIndex> index_;
  std::unique_ptr<DataServiceImpl> service_;
  // Last: destroyed (and so shut down) first, while the service still exists.
  std::unique_ptr<rpc::GrpcServer> grpc_server_;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_DATA_SERVICE_IMPL_H_
