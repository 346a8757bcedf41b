#include "embedding_service/vector_index.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>

#include "embedding_service/matryoshka.h"
#include "kernels/inner_product_scan.h"

namespace maximus::embedding {
namespace {

// Rows scored per block: the scores of a block stay in L1 while the best
// are picked from them.
constexpr int64_t kBlockRows = 2048;

// The `capacity` best (score, slot) pairs seen: a min-heap whose top is the
// score to beat once it is full.
class TopK {
 public:
  explicit TopK(int64_t capacity) : capacity_(capacity) { heap_.reserve(capacity); }
  bool Wants(float score) const {
    return static_cast<int64_t>(heap_.size()) < capacity_ || score > heap_.front().first;
  }
  void Push(float score, int64_t slot) {
    if (static_cast<int64_t>(heap_.size()) < capacity_) {
      heap_.emplace_back(score, slot);
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    } else {
      std::pop_heap(heap_.begin(), heap_.end(), std::greater<>());
      heap_.back() = {score, slot};
      std::push_heap(heap_.begin(), heap_.end(), std::greater<>());
    }
  }
  const std::vector<std::pair<float, int64_t>>& entries() const { return heap_; }

 private:
  const int64_t capacity_;
  std::vector<std::pair<float, int64_t>> heap_;
};

int64_t LevelOf(const std::vector<int64_t>& sizes, int64_t dims) {
  return std::find(sizes.begin(), sizes.end(), dims) - sizes.begin();
}

}  // namespace

bool BetterHit(const SearchHit& a, const SearchHit& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.id < b.id;
}

VectorIndex::VectorIndex(const IndexConfig& config)
    : config_(config),
      prefix_sizes_(PrefixSizes(config.dims)),
      prefix_dims_(std::min(kSmallestPrefix, config.dims)) {}

void VectorIndex::Resize(int64_t n) {
  const int64_t levels = static_cast<int64_t>(prefix_sizes_.size());
  prefixes_.resize(n * prefix_dims_);
  if (config_.type == ElementType::kFloat16) {
    full_fp16_.resize(n * config_.dims);
  } else {
    full_fp32_.resize(n * config_.dims);
  }
  inverse_norms_.resize(n * levels);
  ids_.resize(n);
  metadata_.resize(n);
}

void VectorIndex::Reserve(int64_t n) {
  absl::MutexLock lock(&mutex_);
  prefixes_.reserve(n * prefix_dims_);
  if (config_.type == ElementType::kFloat16) {
    full_fp16_.reserve(n * config_.dims);
  } else {
    full_fp32_.reserve(n * config_.dims);
  }
  inverse_norms_.reserve(n * prefix_sizes_.size());
  ids_.reserve(n);
  metadata_.reserve(n);
  slots_.reserve(n);
}

void VectorIndex::WriteSlot(int64_t slot, VectorRecord record) {
  const int64_t d = config_.dims;
  std::vector<float>& values = record.values;
  if (config_.type == ElementType::kFloat16) {
    // Prefixes and norms from the rounded values, as a restart sees them.
    for (int64_t j = 0; j < d; ++j) {
      full_fp16_[slot * d + j] = kernels::FloatToFp16(values[j]);
      values[j] = kernels::Fp16ToFloat(full_fp16_[slot * d + j]);
    }
  } else {
    std::copy(values.begin(), values.end(), full_fp32_.begin() + slot * d);
  }
  const std::vector<float> prefix = NormalizedPrefix(values, prefix_dims_);
  std::copy(prefix.begin(), prefix.end(), prefixes_.begin() + slot * prefix_dims_);
  const int64_t levels = static_cast<int64_t>(prefix_sizes_.size());
  for (int64_t l = 0; l < levels; ++l) {
    const double norm = PrefixNorm(values, prefix_sizes_[l]);
    inverse_norms_[slot * levels + l] = norm > 0 ? static_cast<float>(1.0 / norm) : 0.0f;
  }
  ids_[slot] = std::move(record.id);
  metadata_[slot] = std::move(record.metadata);
}

void VectorIndex::MoveSlot(int64_t from, int64_t to) {
  const int64_t d = config_.dims;
  const int64_t levels = static_cast<int64_t>(prefix_sizes_.size());
  std::copy_n(prefixes_.begin() + from * prefix_dims_, prefix_dims_,
              prefixes_.begin() + to * prefix_dims_);
  if (config_.type == ElementType::kFloat16) {
    std::copy_n(full_fp16_.begin() + from * d, d, full_fp16_.begin() + to * d);
  } else {
    std::copy_n(full_fp32_.begin() + from * d, d, full_fp32_.begin() + to * d);
  }
  std::copy_n(inverse_norms_.begin() + from * levels, levels, inverse_norms_.begin() + to * levels);
  ids_[to] = std::move(ids_[from]);
  metadata_[to] = std::move(metadata_[from]);
  slots_[ids_[to]] = to;
}

void VectorIndex::SetPrefixScanner(std::unique_ptr<PrefixScanner> scanner) {
  absl::MutexLock lock(&mutex_);
  scanner_ = std::move(scanner);
}

void VectorIndex::Upsert(VectorRecord record) {
  absl::MutexLock lock(&mutex_);
  ++version_;
  auto it = slots_.find(record.id);
  int64_t slot;
  if (it != slots_.end()) {
    slot = it->second;
  } else {
    slot = size_++;
    Resize(size_);
    slots_.emplace(record.id, slot);
  }
  WriteSlot(slot, std::move(record));
}

bool VectorIndex::Delete(absl::string_view id) {
  absl::MutexLock lock(&mutex_);
  ++version_;
  auto it = slots_.find(id);
  if (it == slots_.end()) return false;
  const int64_t slot = it->second;
  slots_.erase(it);
  const int64_t last = size_ - 1;
  if (slot != last) MoveSlot(last, slot);
  size_ = last;
  Resize(size_);
  return true;
}

std::optional<VectorRecord> VectorIndex::Get(absl::string_view id) const {
  absl::ReaderMutexLock lock(&mutex_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return std::nullopt;
  const int64_t slot = it->second, d = config_.dims;
  VectorRecord record;
  record.id = ids_[slot];
  record.metadata = metadata_[slot];
  record.values.resize(d);
  for (int64_t j = 0; j < d; ++j) {
    record.values[j] = config_.type == ElementType::kFloat16
                           ? kernels::Fp16ToFloat(full_fp16_[slot * d + j])
                           : full_fp32_[slot * d + j];
  }
  return record;
}

bool VectorIndex::Contains(absl::string_view id) const {
  absl::ReaderMutexLock lock(&mutex_);
  return slots_.contains(id);
}

int64_t VectorIndex::size() const {
  absl::ReaderMutexLock lock(&mutex_);
  return size_;
}

int64_t VectorIndex::MemoryBytes() const {
  absl::ReaderMutexLock lock(&mutex_);
  return static_cast<int64_t>(prefixes_.size() * sizeof(float) +
                              full_fp32_.size() * sizeof(float) +
                              full_fp16_.size() * sizeof(kernels::Fp16Bits) +
                              inverse_norms_.size() * sizeof(float));
}

void VectorIndex::ScanFull(const float* query, int64_t dims, int64_t begin, int64_t count,
                           float* out) const {
  const int64_t d = config_.dims;
  if (config_.type == ElementType::kFloat16) {
    kernels::InnerProductScanFp16(query, dims, full_fp16_.data() + begin * d, count, d, out);
  } else {
    kernels::InnerProductScan(query, dims, full_fp32_.data() + begin * d, count, d, out);
  }
}

bool VectorIndex::Matches(int64_t slot, const SearchOptions& options) const {
  if (!options.filter.has_value()) return true;
  for (const auto& [key, value] : metadata_[slot]) {
    if (key == options.filter->first && value == options.filter->second) return true;
  }
  return false;
}

std::vector<SearchHit> VectorIndex::Search(absl::Span<const float> query,
                                           const SearchOptions& options) const {
  absl::ReaderMutexLock lock(&mutex_);
  const int64_t d = config_.dims;
  const bool exact = options.mode == SearchMode::kExact;
  // Stage 1: the best candidates by the prefix (exact: by everything).
  const int64_t scan_dims = exact ? d : options.prefilter_dims;
  const int64_t level = LevelOf(prefix_sizes_, scan_dims);
  const int64_t levels = static_cast<int64_t>(prefix_sizes_.size());
  const int64_t wanted = exact ? options.k : options.k * options.oversample;
  TopK candidates(std::min<int64_t>(wanted, size_));
  auto select = [&](int64_t begin, int64_t count, const float* scores) {
    for (int64_t i = 0; i < count; ++i) {
      if (candidates.Wants(scores[i]) && Matches(begin + i, options)) {
        candidates.Push(scores[i], begin + i);
      }
    }
  };
  bool scanned = false;
  if (scanner_ != nullptr && !exact && scan_dims == prefix_dims_ && size_ > 0) {
    std::vector<float> all(size_);
    scanned = scanner_
                  ->Scan(prefixes_.data(), size_, prefix_dims_, version_, query.data(), all.data())
                  .ok();
    if (scanned) select(0, size_, all.data());
  }
  float scores[kBlockRows];
  for (int64_t begin = 0; !scanned && begin < size_; begin += kBlockRows) {
    const int64_t count = std::min(kBlockRows, size_ - begin);
    if (!exact && scan_dims == prefix_dims_) {
      kernels::InnerProductScan(query.data(), prefix_dims_, prefixes_.data() + begin * prefix_dims_,
                                count, prefix_dims_, scores);
    } else {
      ScanFull(query.data(), scan_dims, begin, count, scores);
      if (scan_dims != d) {
        for (int64_t i = 0; i < count; ++i) scores[i] *= inverse_norms_[(begin + i) * levels + level];
      }
    }
    select(begin, count, scores);
  }
  // Stage 2: rerank the candidates on the whole vectors.
  std::vector<SearchHit> hits;
  hits.reserve(candidates.entries().size());
  for (const auto& [score, slot] : candidates.entries()) {
    SearchHit hit;
    hit.id = ids_[slot];
    if (exact) {
      hit.score = score;
    } else {
      ScanFull(query.data(), d, slot, 1, &hit.score);
    }
    hits.push_back(std::move(hit));
  }
  const size_t k = std::min<size_t>(options.k, hits.size());
  std::partial_sort(hits.begin(), hits.begin() + k, hits.end(), BetterHit);
  hits.resize(k);
  for (SearchHit& hit : hits) hit.metadata = metadata_[slots_.find(hit.id)->second];
  return hits;
}

}  // namespace maximus::embedding
