// Document and token counts of a store's open shards and of its splits.

#ifndef MAXIMUS_DATA_SERVICE_STORE_STATS_H_
#define MAXIMUS_DATA_SERVICE_STORE_STATS_H_

#include "absl/status/statusor.h"
#include "data_service/document_index.h"
#include "data_service/token_store.h"
#include "proto/data.pb.h"

namespace maximus::data {

// Counted from the index, without reading the store. INVALID_ARGUMENT if
// validation_fraction is outside [0, 0.5].
absl::StatusOr<StoreStats> ComputeStoreStats(const TokenStore& store, const DocumentIndex& index,
                                             double validation_fraction);

// The shard list of a store served with end-of-text `eos_id`.
ShardList DescribeStore(const TokenStore& store, int32_t eos_id);

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_STORE_STATS_H_
