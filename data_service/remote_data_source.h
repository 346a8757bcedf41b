// A DataSource behind one or more DataServices. Each server serves some
// shards of one store; together they must serve every shard exactly once.
// When one server serves them all, it packs the batches (StreamBatches);
// otherwise this client merges the servers' document streams into the one
// epoch order and packs them itself, so the stream is the same either way.
//
// A broken stream (UNAVAILABLE: a server restarting, a network blip) is
// reopened from its last cursor, so the client sees no gap and no repeat, for
// up to `reconnect_timeout`.

#ifndef MAXIMUS_DATA_SERVICE_REMOTE_DATA_SOURCE_H_
#define MAXIMUS_DATA_SERVICE_REMOTE_DATA_SOURCE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "data_service/data_source.h"
#include "data_service/token_store.h"
#include "proto/data.grpc.pb.h"
#include "rpc/client_security.h"

namespace maximus::data {

class RemoteDataSource : public DataSource {
 public:
  struct Options {
    // For the first ListShards of each server.
    absl::Duration connect_timeout = absl::Seconds(10);
    absl::Duration reconnect_timeout = absl::Seconds(60);
    // TLS, client certificate and bearer token for every server (see
    // rpc/client_security.h); the default is plaintext without a token.
    rpc::ClientSecurity security;
    // Bytes of a stream the server may send ahead of the reader (the HTTP/2
    // stream window, fixed); 0: gRPC's default, which grows with the
    // connection's bandwidth-delay product.
    int stream_window_bytes = 0;
  };

  // `addresses`: "host:port" of every server. Fails naming the address that
  // cannot be reached, or the shard that no server or two servers serve.
  static absl::StatusOr<std::unique_ptr<RemoteDataSource>> Connect(
      const std::vector<std::string>& addresses, const Options& options);
  static absl::StatusOr<std::unique_ptr<RemoteDataSource>> Connect(
      const std::vector<std::string>& addresses) {
    return Connect(addresses, Options());
  }

  const ShardList& info() const override { return info_; }
  absl::StatusOr<std::unique_ptr<BatchStream>> OpenStream(
      const StreamBatchesRequest& request) override;
  absl::StatusOr<StoreStats> GetStats(double validation_fraction) override;

  // Ingests tokenized documents, each through the server that serves its
  // shard (one Ingest call per server, in messages of at most
  // `message_documents`); the counts are summed. OK means every document is
  // durable.
  absl::StatusOr<IngestResponse> IngestTokens(absl::Span<const Document> documents,
                                              int message_documents = 512);

  struct Server {
    std::string address;
    std::unique_ptr<DataService::Stub> stub;
    ShardList shards;
  };

 private:
  RemoteDataSource() = default;

  Options options_;
  std::vector<Server> servers_;
  ShardList info_;
  // The server that serves every shard, or -1.
  int full_server_ = -1;
  // Index into servers_ of each shard's server.
  std::vector<int> owner_;
};

// "a:1,b:2" -> {"a:1", "b:2"}.
std::vector<std::string> SplitAddresses(absl::string_view addresses);

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_REMOTE_DATA_SOURCE_H_
