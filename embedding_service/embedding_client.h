// The client of one or more EmbeddingServices that together hold an index:
// server i of N holds the ids with ShardOf(id, N) == i (shard_of.h). Upsert
// sends each id to its shard (one stream per shard, in messages of at most
// `batch` vectors); Get and Delete go to the id's shard; Search goes to every
// shard at once and merges their top k (best first: higher score, then lower
// id), as one server holding everything would answer. Text queries are
// embedded once, by the first server, then searched as a vector.

#ifndef MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_CLIENT_H_
#define MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_CLIENT_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "embedding_service/vector_index.h"
#include "embedding_service/vector_record.h"
#include "proto/embedding.grpc.pb.h"
#include "rpc/client_security.h"

namespace maximus::embedding {

class EmbeddingClient {
 public:
  struct Options {
    rpc::ClientSecurity security;
    // How long Connect waits for each server to answer.
    absl::Duration connect_timeout = absl::Seconds(30);
    // Deadline of each call (an Upsert: of its whole stream).
    absl::Duration call_timeout = absl::Minutes(10);
    // Vectors per Upsert message (one synced batch on the server).
    int64_t batch = 1024;
  };

  // Asks every server which shard it holds; INVALID_ARGUMENT naming the
  // addresses unless they hold shards 0 .. N-1 of N = addresses.size(), once
  // each, all of one dimension.
  static absl::StatusOr<std::unique_ptr<EmbeddingClient>> Connect(
      const std::vector<std::string>& addresses, const Options& options);

  int num_shards() const { return static_cast<int>(shards_.size()); }
  int64_t dims() const { return dims_; }

  // Returns once every record is acknowledged (synced by its shard).
  absl::Status Upsert(absl::Span<const VectorRecord> records);
  absl::Status Delete(absl::Span<const std::string> ids);
  absl::StatusOr<VectorRecord> Get(const std::string& id);
  absl::StatusOr<std::vector<SearchHit>> Search(absl::Span<const float> query,
                                                const SearchOptions& options);
  absl::StatusOr<std::vector<SearchHit>> SearchText(const std::string& text,
                                                    const SearchOptions& options);
  // Vectors held by all shards together.
  absl::StatusOr<int64_t> Size();

 private:
  struct Shard {
    std::string address;
    std::unique_ptr<v1::EmbeddingService::Stub> stub;
  };

  EmbeddingClient() = default;
  void SetDeadline(grpc::ClientContext* context) const;
  // The shard request with options; `query` fills the vector.
  v1::SearchRequest SearchRequestOf(absl::Span<const float> query,
                                    const SearchOptions& options) const;

  Options options_;
  int64_t dims_ = 0;
  std::vector<Shard> shards_;  // By shard index.
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_CLIENT_H_
