// The durable half of an index: vectors and metadata in one RocksDB database,
//   "config"     {"dims": d, "type": "fp32"|"fp16"} (JSON), written at creation
//   "v/<id>"     the record (vector_record.h)
// Every Write is one synced WriteBatch: when it returns OK its records have
// reached the disk through the WAL, and a crash at any moment leaves each
// record either whole or absent (RocksDB applies a batch atomically).

#ifndef MAXIMUS_EMBEDDING_SERVICE_VECTOR_STORE_H_
#define MAXIMUS_EMBEDDING_SERVICE_VECTOR_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "embedding_service/vector_record.h"
#include "rocksdb/db.h"

namespace maximus::embedding {

struct IndexConfig {
  int64_t dims = 0;
  ElementType type = ElementType::kFloat32;
};

// The most dimensions an index holds (a Gemma 3 27B hidden state has 5376).
inline constexpr int64_t kMaxDims = 16384;

class VectorStore {
 public:
  // Opens the store in `dir`, creating it with `config` when there is none.
  // An existing store keeps its own config: FAILED_PRECONDITION naming both
  // when `config` is given and differs; INVALID_ARGUMENT when a new store
  // has no config or one out of range.
  static absl::StatusOr<std::unique_ptr<VectorStore>> Open(const std::string& dir,
                                                           std::optional<IndexConfig> config);

  const IndexConfig& config() const { return config_; }

  // Puts `upserts` (values already normalised) and deletes `deletes` in one
  // synced, atomic batch.
  absl::Status Write(absl::Span<const VectorRecord> upserts,
                     absl::Span<const std::string> deletes);

  // Calls `fn` on every stored record, in id order; stops at its first error.
  absl::Status ForEach(const std::function<absl::Status(VectorRecord)>& fn) const;

 private:
  VectorStore(std::unique_ptr<rocksdb::DB> db, std::string dir, IndexConfig config)
      : db_(std::move(db)), dir_(std::move(dir)), config_(config) {}

  std::unique_ptr<rocksdb::DB> db_;
  const std::string dir_;
  const IndexConfig config_;
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_VECTOR_STORE_H_
