#include "data_service/local_document_source.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace maximus::data {
namespace {

class LocalEpochReader : public EpochReader {
 public:
  LocalEpochReader(const TokenStore* store, std::vector<PlannedDocument> plan, size_t start)
      : store_(store), plan_(std::move(plan)), next_(start) {}

  absl::StatusOr<bool> Next(SequencedDocument* out) override {
    if (next_ >= plan_.size()) return false;
    const PlannedDocument& planned = plan_[next_++];
    absl::StatusOr<Document> document = store_->Get(HexId(planned.id));
    if (!document.ok()) return document.status();
    if (document->tokens.size() != planned.tokens) {
      return absl::DataLossError(absl::StrCat("document ", HexId(planned.id), " has ",
                                              document->tokens.size(), " tokens, the index ",
                                              planned.tokens));
    }
    out->key = planned.key;
    out->id = planned.id;
    out->document = *std::move(document);
    return true;
  }

 private:
  const TokenStore* store_;
  const std::vector<PlannedDocument> plan_;
  size_t next_;
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
