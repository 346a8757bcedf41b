// A stream of packed training batches (see proto/data.proto for what a
// rank's stream holds). The trainer reads batches through this interface,
// whether the store is in-process or behind one or more DataServices.

#ifndef MAXIMUS_DATA_SERVICE_BATCH_STREAM_H_
#define MAXIMUS_DATA_SERVICE_BATCH_STREAM_H_

#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "proto/data.pb.h"

namespace maximus::data {

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
              "packed batches hold little-endian int32 tokens in place");

class BatchStream {
 public:
  virtual ~BatchStream() = default;
  // The next batch; false once a bounded stream has ended.
  virtual absl::StatusOr<bool> Next(PackedBatch* batch) = 0;
};

// The batch's tokens, rows * row_length of them, row-major.
inline absl::Span<const int32_t> BatchTokens(const PackedBatch& batch) {
  return absl::MakeConstSpan(reinterpret_cast<const int32_t*>(batch.tokens().data()),
                             batch.tokens().size() / sizeof(int32_t));
}

// The loss mask as one 0/1 per token (all ones when the batch has none).
inline std::vector<uint8_t> BatchLossMask(const PackedBatch& batch) {
  const size_t n = batch.tokens().size() / sizeof(int32_t);
  if (batch.loss_mask().empty()) return std::vector<uint8_t>(n, 1);
  return std::vector<uint8_t>(batch.loss_mask().begin(), batch.loss_mask().end());
}

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_BATCH_STREAM_H_
