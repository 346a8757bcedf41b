#include "data_service/document_index.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace maximus::data {

absl::StatusOr<std::unique_ptr<DocumentIndex>> DocumentIndex::Build(const TokenStore& store) {
  std::unique_ptr<DocumentIndex> index(new DocumentIndex());
  for (int shard : store.open_shards()) {
    absl::Status malformed;
    absl::Status s = store.ForEachDocument(shard, [&](absl::string_view hex, uint32_t tokens) {
      RawId id;
      if (!ParseHexId(hex, &id)) {
        if (malformed.ok()) {
          malformed = absl::DataLossError(
              absl::StrCat("shard ", shard, " holds a document key that is not an id: ", hex));
        }
        return;
      }
      index->Add(id, tokens);
    });
    if (!s.ok()) return s;
    if (!malformed.ok()) return malformed;
  }
  return index;
}

void DocumentIndex::Add(const RawId& id, uint32_t tokens) {
  absl::MutexLock lock(&mu_);
  lengths_.emplace(id, tokens);
}

std::vector<PlannedDocument> DocumentIndex::Plan(const EpochOrder& order) const {
  std::vector<PlannedDocument> plan;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, tokens] : lengths_) {
      uint64_t key;
      if (order.Selects(id, &key)) plan.push_back({key, id, tokens});
    }
  }
  std::sort(plan.begin(), plan.end());
  return plan;
}

void DocumentIndex::CountSplits(double validation_fraction, SplitCounts* train,
                                SplitCounts* validation) const {
  *train = {};
  *validation = {};
  absl::MutexLock lock(&mu_);
  for (const auto& [id, tokens] : lengths_) {
    SplitCounts* counts = InValidation(id, validation_fraction) ? validation : train;
    ++counts->documents;
    counts->tokens += tokens;
  }
}

int64_t DocumentIndex::documents() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(lengths_.size());
}

}  // namespace maximus::data
