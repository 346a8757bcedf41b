// Several document sources, each holding some shards of one store, read as
// one: their epoch streams are merged in (key, id) order, which is the
// epoch order of the whole store.

#ifndef MAXIMUS_DATA_SERVICE_MERGED_DOCUMENT_SOURCE_H_
#define MAXIMUS_DATA_SERVICE_MERGED_DOCUMENT_SOURCE_H_

#include <memory>
#include <vector>

#include "data_service/document_source.h"

namespace maximus::data {

class MergedDocumentSource : public DocumentSource {
 public:
  explicit MergedDocumentSource(std::vector<std::unique_ptr<DocumentSource>> parts)
      : parts_(std::move(parts)) {}

  absl::StatusOr<std::unique_ptr<EpochReader>> OpenEpoch(const Selection& selection, uint64_t epoch,
                                                         const EpochPosition& from) override;

 private:
  std::vector<std::unique_ptr<DocumentSource>> parts_;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_MERGED_DOCUMENT_SOURCE_H_
