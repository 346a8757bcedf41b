// The ids and lengths of the documents of a store's open shards, in memory,
// so that an epoch's order can be computed without reading documents.
// About 60 bytes per document.

#ifndef MAXIMUS_DATA_SERVICE_DOCUMENT_INDEX_H_
#define MAXIMUS_DATA_SERVICE_DOCUMENT_INDEX_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "data_service/epoch_order.h"
#include "data_service/token_store.h"

namespace maximus::data {

struct PlannedDocument {
  uint64_t key;
  RawId id;
  uint32_t tokens;
};

// Ascending (key, id): the order documents are read in.
inline bool operator<(const PlannedDocument& a, const PlannedDocument& b) {
  return a.key != b.key ? a.key < b.key : a.id < b.id;
}

struct SplitCounts {
  int64_t documents = 0;
  int64_t tokens = 0;
};

class DocumentIndex {
 public:
  // Scans every open shard of `store`.
  static absl::StatusOr<std::unique_ptr<DocumentIndex>> Build(const TokenStore& store);

  // Records a document (again: no effect). Thread-safe.
  void Add(const RawId& id, uint32_t tokens);

  // The documents `order` selects, sorted. Thread-safe.
  std::vector<PlannedDocument> Plan(const EpochOrder& order) const;

  // Sizes of the train and validation splits under `validation_fraction`.
  void CountSplits(double validation_fraction, SplitCounts* train, SplitCounts* validation) const;

  int64_t documents() const;

 private:
  DocumentIndex() = default;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<RawId, uint32_t> lengths_ ABSL_GUARDED_BY(mu_);
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_DOCUMENT_INDEX_H_
