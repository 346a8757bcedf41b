// A sharded store of tokenized documents over RocksDB.
//
// Layout of a store directory:
//   <dir>/store.json                 format version, shard count, tokenizer
//                                    fingerprint and vocabulary size; written
//                                    last by Create, so its presence marks a
//                                    complete store.
//   <dir>/shard-00000-of-00004/ ...  one RocksDB per shard.
// Keys in a shard:
//   "m/meta"      the same metadata as JSON, plus the shard's index.
//   "d/<id>"      one document; <id> is the lowercase hex SHA-256 of the
//                 document's token bytes (int32 little-endian), so the same
//                 token sequence is stored once whatever its loss mask.
// Document value (all integers little-endian):
//   u8  value format version (1)
//   u32 token count n
//   u8  1 if a loss mask follows, 0 if the mask is all ones
//   n × i32 tokens, then n × u8 mask (0 or 1) if present
//   u32 CRC-32C of all preceding bytes of the value.
// A document lives in shard ShardOf(id): the first 16 hex digits of the id
// read as a big-endian uint64, modulo the shard count.

#ifndef MAXIMUS_DATA_SERVICE_TOKEN_STORE_H_
#define MAXIMUS_DATA_SERVICE_TOKEN_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "rocksdb/db.h"

namespace maximus::data {

inline constexpr int kStoreFormatVersion = 1;

struct Document {
  std::vector<int32_t> tokens;
  // Empty: every token counts in the loss. Otherwise one 0/1 per token.
  std::vector<uint8_t> loss_mask;
};

struct StoreMetadata {
  int format_version = kStoreFormatVersion;
  int num_shards = 0;
  // Lowercase hex SHA-256 of the tokenizer.json (Tokenizer::fingerprint()).
  std::string tokenizer_fingerprint;
  int32_t vocab_size = 0;
};

struct WriteResult {
  // One id per input document, in input order (duplicates included).
  std::vector<std::string> ids;
  // Documents written by this call.
  int64_t added = 0;
  // Documents already stored, or repeated earlier in the same batch.
  int64_t duplicates = 0;
};

// How a store is opened. The defaults suit servers and ingestion.
struct StoreOptions {
  // Opens without writing anything to disk; AddDocuments answers
  // FAILED_PRECONDITION.
  bool read_only = false;
  // If opening for writing fails because the disk is full, opens read-only
  // instead (and says so on stderr), so the store can still be streamed;
  // AddDocuments then answers RESOURCE_EXHAUSTED.
  bool read_only_if_disk_full = true;
  // The RocksDB environment of every shard; null: the default one. Tests
  // pass one whose disk fills up.
  rocksdb::Env* env = nullptr;
};

struct ShardStats {
  int64_t documents = 0;
  int64_t tokens = 0;
};

class TokenStore {
 public:
  // Creates a new store in `dir` (made if missing); fails with
  // ALREADY_EXISTS if `dir` already holds a store, and with
  // FAILED_PRECONDITION naming what is there if `dir` holds anything but
  // the empty shards of an interrupted Create of the same store (another
  // store's shards without store.json, documents, unrelated files).
  static absl::StatusOr<std::unique_ptr<TokenStore>> Create(const std::string& dir,
                                                            const StoreMetadata& metadata,
                                                            const StoreOptions& options = {});
  // Opens an existing store. Fails with FAILED_PRECONDITION, naming both
  // values, if the store was built with another tokenizer fingerprint or
  // another shard count. `shards` lists the shards to open (empty: all), so
  // that several processes can each serve some shards of one store.
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(const std::string& dir,
                                                          absl::string_view tokenizer_fingerprint,
                                                          int num_shards,
                                                          absl::Span<const int> shards = {},
                                                          const StoreOptions& options = {});

  // The metadata of the store in `dir`; NOT_FOUND if there is no
  // store.json, DATA_LOSS naming the directory's contents if it is damaged.
  static absl::StatusOr<StoreMetadata> ReadMetadata(const std::string& dir);

  TokenStore(const TokenStore&) = delete;
  TokenStore& operator=(const TokenStore&) = delete;
  ~TokenStore();

  // Validates the whole batch first (INVALID_ARGUMENT naming the document
  // index and token position; nothing is written then), then writes each
  // shard's new documents in one synced WriteBatch. Returning OK means every
  // document is durable. A failure while writing may leave other shards'
  // parts written, but never a partial document. A document of a shard
  // this store did not open is FAILED_PRECONDITION, before anything is
  // written. A write that finds the disk full is RESOURCE_EXHAUSTED naming
  // the shard's path; documents of earlier OK returns stay readable, and
  // the next call retries (RocksDB resumes once space is freed).
  absl::StatusOr<WriteResult> AddDocuments(absl::Span<const Document> batch);

  // NOT_FOUND if absent; DATA_LOSS naming the id if the value is corrupt.
  absl::StatusOr<Document> Get(absl::string_view id) const;
  // Get for many ids at once (batched lookups per shard); one result per id.
  std::vector<absl::StatusOr<Document>> GetMany(absl::Span<const std::string> ids) const;
  // Ids of the shard's documents in key (lexicographic) order.
  absl::StatusOr<std::vector<std::string>> DocumentIds(int shard) const;
  // Calls fn(id, token count) for each document of the shard, in key order,
  // reading only the values' headers (not their checksums).
  absl::Status ForEachDocument(
      int shard, const std::function<void(absl::string_view id, uint32_t tokens)>& fn) const;
  // The same with each document decoded and its checksum verified.
  absl::Status ForEachDecodedDocument(
      int shard, const std::function<void(absl::string_view id, Document&& doc)>& fn) const;
  // Counted by iterating the shard.
  absl::StatusOr<ShardStats> GetShardStats(int shard) const;
  // Whether any open shard holds a document (one seek per shard).
  absl::StatusOr<bool> HasDocuments() const;

  const StoreMetadata& metadata() const { return metadata_; }
  int num_shards() const { return metadata_.num_shards; }
  // The shards this object opened, ascending.
  const std::vector<int>& open_shards() const { return open_shards_; }
  bool owns_all_shards() const { return static_cast<int>(open_shards_.size()) == num_shards(); }
  // Whether the store was opened read-only, asked for or for a full disk.
  bool read_only() const { return !read_only_reason_.empty(); }
  // Why the store is read-only; empty if it is writable.
  const std::string& read_only_reason() const { return read_only_reason_; }

  // Content id of a token sequence (see the layout above).
  static std::string DocumentId(absl::Span<const int32_t> tokens);
  // Shard of a document id; `id` is 64 lowercase hex digits.
  static int ShardOf(absl::string_view id, int num_shards);
  // "shard-00001-of-00004".
  static std::string ShardDirName(int shard, int num_shards);

 private:
  TokenStore(std::string dir, StoreMetadata metadata,
             std::vector<std::unique_ptr<rocksdb::DB>> shards, std::string read_only_reason,
             bool disk_full);
  absl::Status CheckShard(int shard) const;
  std::string ShardPath(int shard) const;

  const std::string dir_;
  const StoreMetadata metadata_;
  // One per shard of the store; null for shards not opened.
  std::vector<std::unique_ptr<rocksdb::DB>> shards_;
  std::vector<int> open_shards_;
  // Per shard, under write_mu_: its last write failed, so it must be resumed before the
  // next (bytes, not bools: the shards are written from parallel threads).
  std::vector<uint8_t> write_failed_;
  const std::string read_only_reason_;
  // Read-only because the disk was full when the store was opened.
  const bool disk_full_;
  // Serialises AddDocuments so duplicate counts are exact.
  absl::Mutex write_mu_;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_TOKEN_STORE_H_
