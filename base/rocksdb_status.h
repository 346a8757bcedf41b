// rocksdb::Status -> absl::Status, for every RocksDB-backed store: a full
// disk is RESOURCE_EXHAUSTED, corruption DATA_LOSS, I/O errors UNAVAILABLE.

#ifndef MAXIMUS_BASE_ROCKSDB_STATUS_H_
#define MAXIMUS_BASE_ROCKSDB_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "rocksdb/status.h"

namespace maximus::base {

// `context` (e.g. "opening shard /x") starts the message.
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context);

}  // namespace maximus::base

#endif  // MAXIMUS_BASE_ROCKSDB_STATUS_H_
