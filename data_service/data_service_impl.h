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

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
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
  struct Limits {
    // Larger Ingest messages end the call with RESOURCE_EXHAUSTED.
    int64_t max_request_bytes = 64 << 20;
    // A StreamBatches call whose batches could be larger is refused with
    // RESOURCE_EXHAUSTED.
    int64_t max_response_bytes = 64 << 20;
    // Streaming calls (Ingest, StreamBatches, StreamDocuments) open at once;
    // one more is refused with RESOURCE_EXHAUSTED.
    int max_streams = 128;
    // Bytes of stream messages being built or sent, across all streams; a
    // stream waits for its next message while the rest hold this much.
    int64_t max_bytes_in_flight = int64_t{1} << 30;
    // StreamDocuments sends a chunk when it holds this many bytes.
    size_t chunk_bytes = 256 << 10;
  };

  // All pointers must outlive the service.
  DataServiceImpl(TokenStore* store, DocumentIndex* index, const tokenizer::Tokenizer* tokenizer,
                  int32_t eos_id, const Limits& limits);

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

  // Streaming calls in progress.
  int active_streams() const { return active_streams_.load(); }
  // Bytes of stream messages being built or sent.
  int64_t bytes_in_flight() const ABSL_LOCKS_EXCLUDED(budget_mutex_);

 private:
  // Holds one of max_streams while a streaming call runs.
  class StreamSlot {
   public:
    explicit StreamSlot(DataServiceImpl* service);
    ~StreamSlot();
    StreamSlot(const StreamSlot&) = delete;
    StreamSlot& operator=(const StreamSlot&) = delete;
    // RESOURCE_EXHAUSTED when max_streams were already open.
    const grpc::Status& status() const { return status_; }

   private:
    DataServiceImpl* const service_;
    grpc::Status status_;
  };

  // Ingest: each message is stored before the next is read, so a call that
  // ends with an error naming "message N" has stored messages 0 .. N-1 (sent
  // again, they count as duplicates). Read as raw messages: grpc::ServerReader<IngestRequest>::Read
  // answers false both at the end of the stream and for a message that does not parse, and the
  // second must end the call with an error.
  grpc::Status IngestRaw(grpc::ServerContext* context,
                         grpc::ServerReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>* stream);
  // Waits until `bytes` more fit in max_bytes_in_flight; CANCELLED or
  // UNAVAILABLE when the call is cancelled or the server stops meanwhile.
  grpc::Status AcquireBytes(grpc::ServerContext* context, int64_t bytes)
      ABSL_LOCKS_EXCLUDED(budget_mutex_);
  void ReleaseBytes(int64_t bytes) ABSL_LOCKS_EXCLUDED(budget_mutex_);

  // Turns one request message into documents; errors name the message and
  // the document.
  absl::StatusOr<std::vector<Document>> BuildDocuments(const IngestRequest& request,
                                                       int64_t message) const;

  TokenStore* const store_;
  DocumentIndex* const index_;
  const tokenizer::Tokenizer* const tokenizer_;
  const int32_t eos_id_;
  const Limits limits_;
  LocalDocumentSource source_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> active_streams_{0};
  mutable absl::Mutex budget_mutex_;
  absl::CondVar budget_freed_;
  int64_t bytes_in_flight_ ABSL_GUARDED_BY(budget_mutex_) = 0;
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
    // See DataServiceImpl::Limits.
    int64_t max_response_bytes = 64 << 20;
    int max_streams = 128;
    int64_t max_bytes_in_flight = int64_t{1} << 30;
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
  int active_streams() const { return service_->active_streams(); }
  int64_t bytes_in_flight() const { return service_->bytes_in_flight(); }
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
