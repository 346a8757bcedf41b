// Where a packed-batch stream gets its documents: one epoch at a time, in
// the epoch's order (see epoch_order.h). Implemented over local shards, over
// one DataService, and as a merge of several sources.

#ifndef MAXIMUS_DATA_SERVICE_DOCUMENT_SOURCE_H_
#define MAXIMUS_DATA_SERVICE_DOCUMENT_SOURCE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "data_service/epoch_order.h"
#include "data_service/token_store.h"
#include "proto/data.pb.h"

namespace maximus::data {

// A document in an epoch's order. The spans stay valid until the next call
// of the EpochReader that returned it.
struct SequencedDocument {
  uint64_t key = 0;
  RawId id{};
  absl::Span<const int32_t> tokens;
  absl::Span<const uint8_t> loss_mask;  // Empty: every token counts.
  // Backs the spans when the source has no stable copy of the document.
  Document storage;

  void PointAtStorage() {
    tokens = storage.tokens;
    loss_mask = storage.loss_mask;
  }
};

// A place in an epoch's order: documents before (key, id) are skipped.
struct EpochPosition {
  bool from_start = true;
  uint64_t key = 0;
  RawId id{};
};

class EpochReader {
 public:
  virtual ~EpochReader() = default;
  // The next document in order; false at the end of the epoch.
  virtual absl::StatusOr<bool> Next(SequencedDocument* document) = 0;
};

class DocumentSource {
 public:
  virtual ~DocumentSource() = default;
  // `selection` has been validated.
  virtual absl::StatusOr<std::unique_ptr<EpochReader>> OpenEpoch(const Selection& selection,
                                                                 uint64_t epoch,
                                                                 const EpochPosition& from) = 0;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_DOCUMENT_SOURCE_H_
