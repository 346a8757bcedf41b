// Which documents a trainer rank reads in an epoch, and in which order.
//
// Everything is a function of (seed, epoch, document id) alone, so the order
// does not depend on how the store is sharded, which server holds which
// shard, or in which order documents were ingested; a client can merge the
// sorted streams of several servers into the one order.
//   validation:  the id's bytes 8..15, as a big-endian integer, fall below
//                validation_fraction * 2^64 (bytes 0..7 choose the shard, so
//                the split is independent of the shard);
//   shuffle key: a 64-bit mix of (seed, epoch, id); an epoch's documents are
//                read in ascending (key, id);
//   rank:        another mix of the key, modulo world_size.

#ifndef MAXIMUS_DATA_SERVICE_EPOCH_ORDER_H_
#define MAXIMUS_DATA_SERVICE_EPOCH_ORDER_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/data.pb.h"

namespace maximus::data {

// A document id as its 32 SHA-256 bytes.
using RawId = std::array<uint8_t, 32>;

// Parses 64 lowercase hex digits; false if `hex` is not such an id.
bool ParseHexId(absl::string_view hex, RawId* id);
std::string HexId(const RawId& id);
// The id as the 32-byte string used in protos.
inline absl::string_view IdBytes(const RawId& id) {
  return absl::string_view(reinterpret_cast<const char*>(id.data()), id.size());
}
// False unless `bytes` has 32 bytes.
bool IdFromBytes(absl::string_view bytes, RawId* id);

// INVALID_ARGUMENT naming the field if the selection is malformed.
absl::Status ValidateSelection(const Selection& selection);

// A selection's split test and per-epoch order, precomputed.
class EpochOrder {
 public:
  // `selection` must be valid.
  EpochOrder(const Selection& selection, uint64_t epoch);

  bool InSplit(const RawId& id) const;
  uint64_t Key(const RawId& id) const;
  // The rank of a document with shuffle key `key`.
  uint32_t RankOf(uint64_t key) const;
  // InSplit and of this selection's rank; *key gets the shuffle key.
  bool Selects(const RawId& id, uint64_t* key) const;

 private:
  bool validation_;
  uint64_t validation_threshold_;
  uint64_t epoch_salt_;
  uint32_t rank_;
  uint32_t world_size_;
};

// True if the document is in the held-out validation split under `fraction`.
bool InValidation(const RawId& id, double fraction);

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_EPOCH_ORDER_H_
