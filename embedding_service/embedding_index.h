// An index that survives restarts: the RocksDB store (vector_store.h) and
// the in-memory search structure rebuilt from it (vector_index.h), behind
// the checks every caller needs. Upsert returns once its vectors are synced
// to disk; a crash loses no acknowledged vector and tears none.
//
// Errors name the field: INVALID_ARGUMENT for a wrong dimension, a NaN or
// infinite value, an all-zero vector, an empty or oversize id or metadata,
// k or oversample out of range, a prefilter size that is not a Matryoshka
// prefix; NOT_FOUND for an unknown id (Get, Delete).

#ifndef MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_INDEX_H_
#define MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "embedding_service/vector_index.h"
#include "embedding_service/vector_record.h"
#include "embedding_service/vector_store.h"

namespace maximus::embedding {

struct IndexLimits {
  int64_t max_k = 1000;
  int64_t max_oversample = 100;
  int64_t max_id_bytes = 512;
  int64_t max_metadata_entries = 32;
  // Keys and values of one vector together.
  int64_t max_metadata_bytes = 8192;
  // Vectors in one Upsert (one synced batch).
  int64_t max_batch = 4096;
};

// The shard of ids this index holds (shard_of.h); {0, 1}: all of them.
struct ShardAssignment {
  int index = 0;
  int count = 1;
};

class EmbeddingIndex {
 public:
  // Opens (or, with `config`, creates) the index in `dir` and rebuilds the
  // search structure from it. DATA_LOSS naming the id for a damaged vector.
  static absl::StatusOr<std::unique_ptr<EmbeddingIndex>> Open(const std::string& dir,
                                                              std::optional<IndexConfig> config,
                                                              const IndexLimits& limits = {},
                                                              ShardAssignment shard = {});

  const IndexConfig& config() const { return store_->config(); }
  const IndexLimits& limits() const { return limits_; }
  const ShardAssignment& shard() const { return shard_; }
  const VectorIndex& vectors() const { return *index_; }
  // Stage 1 on an accelerator (VectorIndex::SetPrefixScanner).
  void SetPrefixScanner(std::unique_ptr<PrefixScanner> scanner) {
    index_->SetPrefixScanner(std::move(scanner));
  }

  // Normalises and stores `records` (values of any non-zero norm) in one
  // synced batch, then makes them searchable. All or none: a bad record
  // fails the call, naming "vectors[i]".
  absl::Status Upsert(std::vector<VectorRecord> records) ABSL_LOCKS_EXCLUDED(write_mutex_);
  // NOT_FOUND naming the first unknown id (nothing is deleted then).
  absl::Status Delete(absl::Span<const std::string> ids) ABSL_LOCKS_EXCLUDED(write_mutex_);
  absl::StatusOr<VectorRecord> Get(absl::string_view id) const;
  // `query` of any non-zero norm.
  absl::StatusOr<std::vector<SearchHit>> Search(absl::Span<const float> query,
                                                const SearchOptions& options) const;

  // The checks Search makes, for callers that fan one search out.
  absl::Status CheckSearchOptions(const SearchOptions& options) const;

 private:
  EmbeddingIndex(std::unique_ptr<VectorStore> store, const IndexLimits& limits,
                 ShardAssignment shard);
  absl::Status CheckRecord(const VectorRecord& record, int64_t position) const;

  std::unique_ptr<VectorStore> store_;
  std::unique_ptr<VectorIndex> index_;
  const IndexLimits limits_;
  const ShardAssignment shard_;
  // Orders writes so that the store and the search structure agree.
  absl::Mutex write_mutex_;
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_EMBEDDING_INDEX_H_
