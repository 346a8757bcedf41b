#include "data_service/merged_document_source.h"

#include <utility>

#include "base/status_macros.h"

namespace maximus::data {
namespace {

class MergedEpochReader : public EpochReader {
 public:
  explicit MergedEpochReader(std::vector<std::unique_ptr<EpochReader>> parts)
      : parts_(std::move(parts)), heads_(parts_.size()), live_(parts_.size(), false) {}

  // The document returned last may point into its part's buffers, so that
  // part moves on only at the next call.

  absl::Status Start() {
    for (size_t i = 0; i < parts_.size(); ++i) {
      MAXIMUS_RETURN_IF_ERROR(Refill(i));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Next(SequencedDocument* out) override {
    if (returned_ >= 0) {
      MAXIMUS_RETURN_IF_ERROR(Refill(returned_));
      returned_ = -1;
    }
    // Few parts (one per server): a linear scan beats a heap.
    int best = -1;
    for (size_t i = 0; i < parts_.size(); ++i) {
      if (!live_[i]) continue;
      if (best < 0 || Before(heads_[i], heads_[best])) best = static_cast<int>(i);
    }
    if (best < 0) return false;
    // Moving keeps the storage's buffers, so the spans stay valid.
    *out = std::move(heads_[best]);
    returned_ = best;
    return true;
  }

 private:
  static bool Before(const SequencedDocument& a, const SequencedDocument& b) {
    return a.key != b.key ? a.key < b.key : a.id < b.id;
  }

  absl::Status Refill(size_t i) {
    MAXIMUS_ASSIGN_OR_RETURN(const bool got, parts_[i]->Next(&heads_[i]));
    live_[i] = got;
    return absl::OkStatus();
  }

  std::vector<std::unique_ptr<EpochReader>> parts_;
  std::vector<SequencedDocument> heads_;
  std::vector<bool> live_;
  int returned_ = -1;
};

}  // namespace

absl::StatusOr<std::unique_ptr<EpochReader>> MergedDocumentSource::OpenEpoch(
    const Selection& selection, uint64_t epoch, const EpochPosition& from) {
  std::vector<std::unique_ptr<EpochReader>> readers;
  for (const auto& part : parts_) {
    MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<EpochReader> reader,
                             part->OpenEpoch(selection, epoch, from));
    readers.push_back(std::move(reader));
  }
  auto merged = std::make_unique<MergedEpochReader>(std::move(readers));
  MAXIMUS_RETURN_IF_ERROR(merged->Start());
  return std::unique_ptr<EpochReader>(std::move(merged));
}

}  // namespace maximus::data
