// Packs a document source's epochs into batches of rows of seq_len + 1
// tokens: each document followed by the end-of-text token, documents
// concatenated across row, batch and epoch boundaries, so that no token is
// dropped. The end-of-text token counts in the loss when the document's last
// token does.
//
// Every batch carries the cursor after it; a stream opened with that cursor
// continues with exactly the tokens the first stream would have produced
// next, as long as the store is unchanged.

#ifndef MAXIMUS_DATA_SERVICE_BATCH_PACKER_H_
#define MAXIMUS_DATA_SERVICE_BATCH_PACKER_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "data_service/batch_stream.h"
#include "data_service/document_source.h"
#include "proto/data.pb.h"

namespace maximus::data {

inline constexpr uint32_t kMaxSeqLen = 1 << 20;
inline constexpr uint32_t kMaxBatchSize = 1 << 16;
// A stream fails when its rank finds no document in this many epochs in a
// row (a split too small for the world size).
inline constexpr int kMaxEmptyEpochs = 64;

// INVALID_ARGUMENT naming the field if the request is malformed.
absl::Status ValidateStreamRequest(const StreamBatchesRequest& request);

class BatchPacker : public BatchStream {
 public:
  // `source` must outlive the packer. `eos_id` separates documents and pads
  // the end of a bounded stream.
  static absl::StatusOr<std::unique_ptr<BatchPacker>> Open(DocumentSource* source,
                                                           const StreamBatchesRequest& request,
                                                           int32_t eos_id);

  absl::StatusOr<bool> Next(PackedBatch* batch) override;

 private:
  BatchPacker(DocumentSource* source, const StreamBatchesRequest& request, int32_t eos_id);
  // Makes document_ the document holding the next token; false at the end
  // of a bounded stream.
  absl::StatusOr<bool> Advance();
  absl::Status OpenEpoch(const EpochPosition& from);

  DocumentSource* const source_;
  const StreamBatchesRequest request_;
  const int32_t eos_id_;
  const uint32_t row_length_;

  std::unique_ptr<EpochReader> reader_;
  uint64_t epoch_ = 0;
  bool ended_ = false;
  // The document tokens come from, and how many of its tokens (the
  // end-of-text being number tokens.size()) have been emitted.
  bool has_document_ = false;
  SequencedDocument document_;
  uint32_t consumed_ = 0;
  // Where the last emitted token came from.
  StreamCursor cursor_;
  // Documents read in the current epoch, and epochs in a row without one.
  int64_t documents_in_epoch_ = 0;
  int empty_epochs_ = 0;
};

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_BATCH_PACKER_H_
