// Documents of a store's open shards, read in epoch order.

#ifndef MAXIMUS_DATA_SERVICE_LOCAL_DOCUMENT_SOURCE_H_
#define MAXIMUS_DATA_SERVICE_LOCAL_DOCUMENT_SOURCE_H_

#include <memory>

#include "data_service/document_index.h"
#include "data_service/document_source.h"
#include "data_service/token_store.h"

namespace maximus::data {

class LocalDocumentSource : public DocumentSource {
 public:
  // Both must outlive the source and its readers.
  LocalDocumentSource(const TokenStore* store, const DocumentIndex* index)
      : store_(store), index_(index) {}

  // The epoch's plan is fixed when it is opened: documents added later
  // appear from the next epoch on.
  absl::StatusOr<std::unique_ptr<EpochReader>> OpenEpoch(const Selection& selection, uint64_t epoch,
                                                         const EpochPosition& from) override;

 private:
  const TokenStore* store_;
  const DocumentIndex* index_;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_LOCAL_DOCUMENT_SOURCE_H_
