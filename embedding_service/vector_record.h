// One stored vector: its id, its values (L2-normalised) and its metadata,
// and the byte format it has in RocksDB:
//   u32 CRC-32C of what follows | u8 element type | u32 dims |
//   u32 metadata entries | per entry: u32 key bytes, key, u32 value bytes, value |
//   dims elements (fp32 or fp16, little-endian)

#ifndef MAXIMUS_EMBEDDING_SERVICE_VECTOR_RECORD_H_
#define MAXIMUS_EMBEDDING_SERVICE_VECTOR_RECORD_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::embedding {

enum class ElementType : uint8_t { kFloat32 = 0, kFloat16 = 1 };

// "fp32" or "fp16".
absl::string_view ElementTypeName(ElementType type);
// INVALID_ARGUMENT naming `field` for anything but "fp32" and "fp16".
absl::StatusOr<ElementType> ParseElementType(absl::string_view name, absl::string_view field);

using Metadata = std::vector<std::pair<std::string, std::string>>;

struct VectorRecord {
  std::string id;
  std::vector<float> values;
  Metadata metadata;
};

// The value stored for `record`, its values rounded to `type`.
std::string EncodeVectorRecord(const VectorRecord& record, ElementType type);

// The record stored under `id`; DATA_LOSS naming the id when the bytes are
// torn or damaged (checksum, lengths) or of another type or dimension.
absl::StatusOr<VectorRecord> DecodeVectorRecord(absl::string_view id, absl::string_view bytes,
                                                ElementType type, int64_t dims);

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_VECTOR_RECORD_H_
