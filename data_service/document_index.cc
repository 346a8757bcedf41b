#include "data_service/document_index.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace maximus::data {
namespace {

constexpr size_t kBlockBytes = size_t{16} << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<DocumentIndex>> DocumentIndex::Build(const TokenStore& store,
                                                                    int64_t cache_bytes) {
  std::unique_ptr<DocumentIndex> index(new DocumentIndex(cache_bytes));
  // Pass 1: ids and lengths from the value headers.
  int64_t total_bytes = 0;
  absl::Status malformed;
  for (int shard : store.open_shards()) {
    MAXIMUS_RETURN_IF_ERROR(
        store.ForEachDocument(shard, [&](absl::string_view hex, uint32_t length) {
          RawId id;
          if (!ParseHexId(hex, &id)) {
            if (malformed.ok()) {
              malformed = absl::DataLossError(
                  absl::StrCat("shard ", shard, " holds a document key that is not an id: ", hex));
            }
            return;
          }
          absl::MutexLock lock(&index->mu_);
          index->AddLocked(id, length, nullptr);
          total_bytes += int64_t{length} * 5;
        }));
    MAXIMUS_RETURN_IF_ERROR(malformed);
  }
  if (total_bytes > cache_bytes) return index;
  // Pass 2: the documents, into the cache.
  for (int shard : store.open_shards()) {
    MAXIMUS_RETURN_IF_ERROR(
        store.ForEachDecodedDocument(shard, [&](absl::string_view hex, Document&& doc) {
          RawId id;
          ParseHexId(hex, &id);
          absl::MutexLock lock(&index->mu_);
          Entry& entry = index->entries_[id];
          entry.tokens = index->Store(doc.tokens.data(), doc.tokens.size());
          if (!doc.loss_mask.empty())
            entry.mask = index->Store(doc.loss_mask.data(), doc.loss_mask.size());
        }));
  }
  return index;
}

template <typename T>
const T* DocumentIndex::Store(const T* data, size_t n) {
  const size_t bytes = n * sizeof(T);
  if (cached_bytes_ + static_cast<int64_t>(bytes) > cache_budget_) return nullptr;
  const size_t aligned = (block_used_ + alignof(int32_t) - 1) / alignof(int32_t) * alignof(int32_t);
  if (blocks_.empty() || aligned + bytes > block_size_) {
    block_size_ = std::max(kBlockBytes, bytes);
    blocks_.emplace_back(new char[block_size_]);
    block_used_ = 0;
  } else {
    block_used_ = aligned;
  }
  char* out = blocks_.back().get() + block_used_;
  std::memcpy(out, data, bytes);
  block_used_ += bytes;
  cached_bytes_ += static_cast<int64_t>(bytes);
  return reinterpret_cast<const T*>(out);
}

void DocumentIndex::AddLocked(const RawId& id, uint32_t length, const Document* document) {
  auto [it, inserted] = entries_.try_emplace(id);
  if (!inserted) return;
  it->second.length = length;
  if (document == nullptr) return;
  it->second.tokens = Store(document->tokens.data(), document->tokens.size());
  if (it->second.tokens != nullptr && !document->loss_mask.empty()) {
    it->second.mask = Store(document->loss_mask.data(), document->loss_mask.size());
    if (it->second.mask == nullptr) it->second.tokens = nullptr;
  }
}

void DocumentIndex::Add(const RawId& id, const Document& document) {
  absl::MutexLock lock(&mu_);
  // Cache new documents only while the whole store is cached.
  const bool cache = cached_bytes_ > 0 || entries_.empty();
  AddLocked(id, static_cast<uint32_t>(document.tokens.size()), cache ? &document : nullptr);
}

std::vector<PlannedDocument> DocumentIndex::Plan(const EpochOrder& order) const {
  std::vector<PlannedDocument> plan;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, entry] : entries_) {
      uint64_t key;
      if (order.Selects(id, &key))
        plan.push_back({key, id, entry.length, entry.tokens, entry.mask});
    }
  }
  std::sort(plan.begin(), plan.end());
  return plan;
}

void DocumentIndex::CountSplits(double validation_fraction, SplitCounts* train,
                                SplitCounts* validation, int num_shards,
                                std::vector<SplitCounts>* by_shard) const {
  *train = {};
  *validation = {};
  if (by_shard != nullptr) by_shard->assign(num_shards, SplitCounts());
  absl::MutexLock lock(&mu_);
  for (const auto& [id, entry] : entries_) {
    SplitCounts* counts = InValidation(id, validation_fraction) ? validation : train;
    ++counts->documents;
    counts->tokens += entry.length;
    if (by_shard != nullptr) {
      SplitCounts& shard = (*by_shard)[TokenStore::ShardOf(HexId(id), num_shards)];
      ++shard.documents;
      shard.tokens += entry.length;
    }
  }
}

int64_t DocumentIndex::documents() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(entries_.size());
}

int64_t DocumentIndex::cached_bytes() const {
  absl::MutexLock lock(&mu_);
  return cached_bytes_;
}

}  // namespace maximus::data
