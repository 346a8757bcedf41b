// The ids and lengths of the documents of a store's open shards, in memory,
// so that an epoch's order can be computed without reading documents; and,
// when they fit a memory budget, the documents themselves, so that streams
// copy from memory instead of looking each document up in RocksDB. About 60
// bytes per document, plus 4 per token (and 1 per masked token) if cached.

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

inline constexpr int64_t kDefaultCacheBytes = int64_t{4} << 30;

// A document in an epoch's plan. `tokens` and `mask` point into the cache
// (they stay valid as long as the index), or are null if it is not cached.
struct PlannedDocument {
  uint64_t key;
  RawId id;
  uint32_t length;
  const int32_t* tokens = nullptr;
  const uint8_t* mask = nullptr;
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
  // Scans every open shard of `store`; if their documents take at most
  // `cache_bytes`, reads them into memory too (verifying every checksum).
  static absl::StatusOr<std::unique_ptr<DocumentIndex>> Build(
      const TokenStore& store, int64_t cache_bytes = kDefaultCacheBytes);

  // Records a document (again: no effect), caching it if there is room.
  // Thread-safe.
  void Add(const RawId& id, const Document& document);

  // The documents `order` selects, sorted. Thread-safe.
  std::vector<PlannedDocument> Plan(const EpochOrder& order) const;

  // Sizes of the train and validation splits under `validation_fraction`,
  // and, when `by_shard` is set, of each of `num_shards` shards.
  void CountSplits(double validation_fraction, SplitCounts* train, SplitCounts* validation,
                   int num_shards = 0, std::vector<SplitCounts>* by_shard = nullptr) const;

  int64_t documents() const;
  // Bytes of documents held in memory.
  int64_t cached_bytes() const;

 private:
  struct Entry {
    uint32_t length = 0;
    const int32_t* tokens = nullptr;
    const uint8_t* mask = nullptr;
  };

  explicit DocumentIndex(int64_t cache_bytes) : cache_budget_(cache_bytes) {}
  void AddLocked(const RawId& id, uint32_t length, const Document* document)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Copies `n` items into the cache; null if over budget.
  template <typename T>
  const T* Store(const T* data, size_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  absl::flat_hash_map<RawId, Entry> entries_ ABSL_GUARDED_BY(mu_);
  // The cache: blocks that never move once allocated.
  std::vector<std::unique_ptr<char[]>> blocks_ ABSL_GUARDED_BY(mu_);
  size_t block_used_ ABSL_GUARDED_BY(mu_) = 0;
  size_t block_size_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t cache_budget_ ABSL_GUARDED_BY(mu_);
  int64_t cached_bytes_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_DOCUMENT_INDEX_H_
