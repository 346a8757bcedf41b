// The in-memory search structure of an index, rebuilt from the store at
// start: every vector's normalised 64-dimensional prefix in one contiguous
// fp32 matrix (what stage 1 scans: 256 bytes a vector), the whole vectors
// (fp32 or fp16) for stage 2 and exact search, the inverse norms of every
// Matryoshka prefix (to prefilter on 128, 256, ... dimensions), ids and
// metadata. Deleting moves the last vector into the freed slot, so the
// matrices stay dense.
//
// Search, coarse to fine: score every vector's prefix of prefilter_dims
// (cosine of the re-normalised prefixes), keep the best k * oversample, and
// rerank those by the cosine of the whole vectors. Exact mode scores the
// whole vectors of all. Thread-safe: searches share a reader lock, changes
// take the writer lock.

#ifndef MAXIMUS_EMBEDDING_SERVICE_VECTOR_INDEX_H_
#define MAXIMUS_EMBEDDING_SERVICE_VECTOR_INDEX_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "embedding_service/vector_record.h"
#include "embedding_service/vector_store.h"
#include "kernels/fp16.h"

namespace maximus::embedding {

enum class SearchMode { kCoarseToFine, kExact };

struct SearchOptions {
  int64_t k = 10;
  SearchMode mode = SearchMode::kCoarseToFine;
  // Stage 1 scans this prefix: one of PrefixSizes(dims).
  int64_t prefilter_dims = 64;
  // Stage 1 keeps k * oversample candidates for stage 2.
  int64_t oversample = 8;
  // Only vectors whose metadata has this key with this value.
  std::optional<std::pair<std::string, std::string>> filter;
};

struct SearchHit {
  std::string id;
  float score = 0;  // Cosine similarity of the whole vectors.
  Metadata metadata;
};

// Best first: higher score, then lower id (so that merged shards agree).
bool BetterHit(const SearchHit& a, const SearchHit& b);

// Stage 1 on an accelerator (cuda_prefix_scanner.h): the scores of `query`
// against every row of the [rows, dims] prefix matrix. `version` changes
// whenever the matrix does, so that an implementation may keep a copy of it
// and refresh the copy only then. Called by concurrent searches.
class PrefixScanner {
 public:
  virtual ~PrefixScanner() = default;
  virtual absl::Status Scan(const float* matrix, int64_t rows, int64_t dims, uint64_t version,
                            const float* query, float* scores) = 0;
};

class VectorIndex {
 public:
  explicit VectorIndex(const IndexConfig& config);

  const IndexConfig& config() const { return config_; }
  const std::vector<int64_t>& prefix_sizes() const { return prefix_sizes_; }

  // Stage 1 over 64-dimensional prefixes runs on `scanner` from now on (on
  // the CPU again for a search whose scan fails). Before searches begin.
  void SetPrefixScanner(std::unique_ptr<PrefixScanner> scanner) ABSL_LOCKS_EXCLUDED(mutex_);

  // Room for n vectors without reallocating.
  void Reserve(int64_t n) ABSL_LOCKS_EXCLUDED(mutex_);
  // Adds or replaces. `record.values`: config().dims values of norm 1.
  void Upsert(VectorRecord record) ABSL_LOCKS_EXCLUDED(mutex_);
  // False when the id is absent.
  bool Delete(absl::string_view id) ABSL_LOCKS_EXCLUDED(mutex_);
  // The vector as stored (fp16 indexes: rounded), with its metadata.
  std::optional<VectorRecord> Get(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mutex_);
  bool Contains(absl::string_view id) const ABSL_LOCKS_EXCLUDED(mutex_);
  int64_t size() const ABSL_LOCKS_EXCLUDED(mutex_);
  // Bytes of the matrices that searches read.
  int64_t MemoryBytes() const ABSL_LOCKS_EXCLUDED(mutex_);

  // `query`: config().dims values of norm 1; options already checked
  // (EmbeddingIndex does). At most k hits, best first.
  std::vector<SearchHit> Search(absl::Span<const float> query, const SearchOptions& options) const
      ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  // Scores rows [begin, begin + count) on the first `dims` dimensions of the
  // whole vectors.
  void ScanFull(const float* query, int64_t dims, int64_t begin, int64_t count, float* out) const
      ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  bool Matches(int64_t slot, const SearchOptions& options) const ABSL_SHARED_LOCKS_REQUIRED(mutex_);
  void WriteSlot(int64_t slot, VectorRecord record) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void MoveSlot(int64_t from, int64_t to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);
  void Resize(int64_t n) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_);

  const IndexConfig config_;
  const std::vector<int64_t> prefix_sizes_;
  const int64_t prefix_dims_;  // min(64, dims): the columns of prefixes_.

  mutable absl::Mutex mutex_;
  std::unique_ptr<PrefixScanner> scanner_ ABSL_GUARDED_BY(mutex_);
  uint64_t version_ ABSL_GUARDED_BY(mutex_) = 0;  // Counts changes, for scanner_.
  int64_t size_ ABSL_GUARDED_BY(mutex_) = 0;
  std::vector<float> prefixes_ ABSL_GUARDED_BY(mutex_);  // [size, prefix_dims_], normalised
  std::vector<float> full_fp32_ ABSL_GUARDED_BY(mutex_);  // [size, dims] (fp32 indexes)
  std::vector<kernels::Fp16Bits> full_fp16_ ABSL_GUARDED_BY(mutex_);  // (fp16 indexes)
  // [size, prefix sizes]: 1 / norm of each Matryoshka prefix.
  std::vector<float> inverse_norms_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::string> ids_ ABSL_GUARDED_BY(mutex_);
  std::vector<Metadata> metadata_ ABSL_GUARDED_BY(mutex_);
  absl::flat_hash_map<std::string, int64_t> slots_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_VECTOR_INDEX_H_
