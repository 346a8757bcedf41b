#include "embedding_service/embedding_index.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "base/status_macros.h"
#include "embedding_service/matryoshka.h"
#include "embedding_service/shard_of.h"

namespace maximus::embedding {
namespace {

absl::Status CheckRange(absl::string_view field, int64_t value, int64_t low, int64_t high) {
  if (value < low || value > high) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ": ", value, " is not in [", low, ", ", high, "]"));
  }
  return absl::OkStatus();
}

}  // namespace

EmbeddingIndex::EmbeddingIndex(std::unique_ptr<VectorStore> store, const IndexLimits& limits,
                               ShardAssignment shard)
    : store_(std::move(store)),
      index_(std::make_unique<VectorIndex>(store_->config())),
      limits_(limits),
      shard_(shard) {}

absl::StatusOr<std::unique_ptr<EmbeddingIndex>> EmbeddingIndex::Open(
    const std::string& dir, std::optional<IndexConfig> config, const IndexLimits& limits,
    ShardAssignment shard) {
  if (shard.count < 1 || shard.index < 0 || shard.index >= shard.count) {
    return absl::InvalidArgumentError(
        absl::StrCat("shard ", shard.index, " of ", shard.count, " does not exist"));
  }
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<VectorStore> store, VectorStore::Open(dir, config));
  std::unique_ptr<EmbeddingIndex> index(new EmbeddingIndex(std::move(store), limits, shard));
  MAXIMUS_RETURN_IF_ERROR(index->store_->ForEach([&](VectorRecord record) {
    if (ShardOf(record.id, shard.count) != shard.index) {
      return absl::FailedPreconditionError(absl::StrCat(
          "the index in ", dir, " holds \"", record.id, "\", an id of shard ",
          ShardOf(record.id, shard.count), " of ", shard.count, ", not of shard ", shard.index,
          " (was it written with another --shard or --num_shards?)"));
    }
    index->index_->Upsert(std::move(record));
    return absl::OkStatus();
  }));
  return index;
}

absl::Status EmbeddingIndex::CheckRecord(const VectorRecord& record, int64_t position) const {
  const std::string field = absl::StrCat("vectors[", position, "]");
  if (record.id.empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".id is empty"));
  if (static_cast<int64_t>(record.id.size()) > limits_.max_id_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".id has ", record.id.size(),
                                                   " bytes; at most ", limits_.max_id_bytes));
  }
  if (ShardOf(record.id, shard_.count) != shard_.index) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ".id \"", record.id, "\" belongs to shard ", ShardOf(record.id, shard_.count),
        " of ", shard_.count, "; this index holds shard ", shard_.index));
  }
  if (static_cast<int64_t>(record.values.size()) != config().dims) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".values has ", record.values.size(),
                                                   " dimensions; the index holds ",
                                                   config().dims));
  }
  MAXIMUS_RETURN_IF_ERROR(CheckUsableVector(record.values, absl::StrCat(field, ".values")));
  if (static_cast<int64_t>(record.metadata.size()) > limits_.max_metadata_entries) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".metadata has ",
                                                   record.metadata.size(), " entries; at most ",
                                                   limits_.max_metadata_entries));
  }
  int64_t bytes = 0;
  for (const auto& [key, value] : record.metadata) {
    if (key.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".metadata has an empty key"));
    }
    bytes += static_cast<int64_t>(key.size() + value.size());
  }
  if (bytes > limits_.max_metadata_bytes) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".metadata has ", bytes,
                                                   " bytes; at most ",
                                                   limits_.max_metadata_bytes));
  }
  return absl::OkStatus();
}

absl::Status EmbeddingIndex::Upsert(std::vector<VectorRecord> records) {
  if (records.empty()) return absl::InvalidArgumentError("vectors is empty");
  if (static_cast<int64_t>(records.size()) > limits_.max_batch) {
    return absl::InvalidArgumentError(absl::StrCat("vectors has ", records.size(),
                                                   " entries; at most ", limits_.max_batch,
                                                   " per call (stream more calls)"));
  }
  for (size_t i = 0; i < records.size(); ++i) {
    MAXIMUS_RETURN_IF_ERROR(CheckRecord(records[i], static_cast<int64_t>(i)));
    records[i].values = NormalizedPrefix(records[i].values, config().dims);
    std::sort(records[i].metadata.begin(), records[i].metadata.end());
  }
  absl::MutexLock lock(&write_mutex_);
  MAXIMUS_RETURN_IF_ERROR(store_->Write(records, {}));
  for (VectorRecord& record : records) index_->Upsert(std::move(record));
  return absl::OkStatus();
}

absl::Status EmbeddingIndex::Delete(absl::Span<const std::string> ids) {
  if (ids.empty()) return absl::InvalidArgumentError("ids is empty");
  if (static_cast<int64_t>(ids.size()) > limits_.max_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat("ids has ", ids.size(), " entries; at most ", limits_.max_batch));
  }
  absl::flat_hash_map<absl::string_view, size_t> seen;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (auto [it, inserted] = seen.emplace(ids[i], i); !inserted) {
      return absl::InvalidArgumentError(
          absl::StrCat("ids[", i, "] repeats ids[", it->second, "] (\"", ids[i], "\")"));
    }
  }
  absl::MutexLock lock(&write_mutex_);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!index_->Contains(ids[i])) {
      return absl::NotFoundError(
          absl::StrCat("ids[", i, "]: no vector has id \"", ids[i], "\"; nothing was deleted"));
    }
  }
  MAXIMUS_RETURN_IF_ERROR(store_->Write({}, ids));
  for (const std::string& id : ids) index_->Delete(id);
  return absl::OkStatus();
}

absl::StatusOr<VectorRecord> EmbeddingIndex::Get(absl::string_view id) const {
  if (id.empty()) return absl::InvalidArgumentError("id is empty");
  std::optional<VectorRecord> record = index_->Get(id);
  if (!record.has_value()) {
    return absl::NotFoundError(absl::StrCat("id: no vector has id \"", id, "\""));
  }
  return *std::move(record);
}

absl::Status EmbeddingIndex::CheckSearchOptions(const SearchOptions& options) const {
  MAXIMUS_RETURN_IF_ERROR(CheckRange("k", options.k, 1, limits_.max_k));
  if (options.filter.has_value() && options.filter->first.empty()) {
    return absl::InvalidArgumentError("filter: the key is empty");
  }
  if (options.mode == SearchMode::kExact) return absl::OkStatus();
  MAXIMUS_RETURN_IF_ERROR(CheckRange("oversample", options.oversample, 1, limits_.max_oversample));
  const std::vector<int64_t>& sizes = index_->prefix_sizes();
  if (std::find(sizes.begin(), sizes.end(), options.prefilter_dims) == sizes.end()) {
    return absl::InvalidArgumentError(absl::StrCat("prefilter_dims: ", options.prefilter_dims,
                                                   " is not a prefix size of this index (",
                                                   absl::StrJoin(sizes, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SearchHit>> EmbeddingIndex::Search(absl::Span<const float> query,
                                                              const SearchOptions& options) const {
  if (static_cast<int64_t>(query.size()) != config().dims) {
    return absl::InvalidArgumentError(absl::StrCat(
        "vector has ", query.size(), " dimensions; the index holds ", config().dims));
  }
  MAXIMUS_RETURN_IF_ERROR(CheckUsableVector(query, "vector"));
  MAXIMUS_RETURN_IF_ERROR(CheckSearchOptions(options));
  const std::vector<float> normalized = NormalizedPrefix(query, config().dims);
  return index_->Search(normalized, options);
}

}  // namespace maximus::embedding
