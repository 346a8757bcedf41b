// The trainer's view of its data: a store, in-process (EmbeddedDataSource)
// or behind one or more DataServices (RemoteDataSource), that opens packed
// batch streams. Both give the same stream, token for token, for the same
// store and request.

#ifndef MAXIMUS_DATA_SERVICE_DATA_SOURCE_H_
#define MAXIMUS_DATA_SERVICE_DATA_SOURCE_H_

#include <memory>

#include "absl/status/statusor.h"
#include "data_service/batch_stream.h"
#include "proto/data.pb.h"

namespace maximus::data {

class DataSource {
 public:
  virtual ~DataSource() = default;
  // The whole store: shard count, tokenizer, end-of-text id; `shards` lists
  // every shard.
  virtual const ShardList& info() const = 0;
  virtual absl::StatusOr<std::unique_ptr<BatchStream>> OpenStream(
      const StreamBatchesRequest& request) = 0;
  // Totals over the whole store.
  virtual absl::StatusOr<StoreStats> GetStats(double validation_fraction) = 0;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_DATA_SOURCE_H_
