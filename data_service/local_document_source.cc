#include "data_service/local_document_source.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace maximus::data {
namespace {

// Documents that are not in the index's cache are read this many at a time,
// with batched lookups.
constexpr size_t kReadAhead = 256;

class LocalEpochReader : public EpochReader {
 public:
  LocalEpochReader(const TokenStore* store, std::vector<PlannedDocument> plan, size_t start)
      : store_(store),
        plan_(std::move(plan)),
        next_(start),
        window_start_(start),
        window_end_(start) {}

  absl::StatusOr<bool> Next(SequencedDocument* out) override {
    if (next_ >= plan_.size()) return false;
    if (next_ >= window_end_) ReadWindow();
    const PlannedDocument& planned = plan_[next_];
    out->key = planned.key;
    out->id = planned.id;
    if (planned.tokens != nullptr) {
      out->tokens = absl::MakeConstSpan(planned.tokens, planned.length);
      out->loss_mask = planned.mask == nullptr ? absl::Span<const uint8_t>()
                                               : absl::MakeConstSpan(planned.mask, planned.length);
    } else {
      absl::StatusOr<Document>& fetched = fetched_[next_ - window_start_];
      MAXIMUS_RETURN_IF_ERROR(fetched.status());
      if (fetched->tokens.size() != planned.length) {
        return absl::DataLossError(absl::StrCat("document ", HexId(planned.id), " has ",
                                                fetched->tokens.size(), " tokens, the index ",
                                                planned.length));
      }
      out->storage = *std::move(fetched);
      out->PointAtStorage();
    }
    ++next_;
    return true;
  }

 private:
  // Fetches the uncached documents of the next window.
  void ReadWindow() {
    window_start_ = next_;
    window_end_ = std::min(plan_.size(), next_ + kReadAhead);
    std::vector<std::string> ids;
    std::vector<size_t> where;
    for (size_t i = window_start_; i < window_end_; ++i) {
      if (plan_[i].tokens != nullptr) continue;
      ids.push_back(HexId(plan_[i].id));
      where.push_back(i - window_start_);
    }
    fetched_.assign(window_end_ - window_start_, absl::StatusOr<Document>(Document()));
    if (ids.empty()) return;
    std::vector<absl::StatusOr<Document>> got = store_->GetMany(ids);
    for (size_t j = 0; j < got.size(); ++j) fetched_[where[j]] = std::move(got[j]);
  }

  const TokenStore* store_;
  const std::vector<PlannedDocument> plan_;
  size_t next_;
  size_t window_start_;
  size_t window_end_;
  std::vector<absl::StatusOr<Document>> fetched_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EpochReader>> LocalDocumentSource::OpenEpoch(
    const Selection& selection, uint64_t epoch, const EpochPosition& from) {
  std::vector<PlannedDocument> plan = index_->Plan(EpochOrder(selection, epoch));
  size_t start = 0;
  if (!from.from_start) {
    const PlannedDocument probe{from.key, from.id, 0};
    start = std::lower_bound(plan.begin(), plan.end(), probe) - plan.begin();
  }
  return std::make_unique<LocalEpochReader>(store_, std::move(plan), start);
}

}  // namespace maximus::data
