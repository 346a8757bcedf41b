#include "embedding_service/vector_record.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "base/crc32c.h"
#include "kernels/fp16.h"

namespace maximus::embedding {
namespace {

void PutU32(uint32_t v, std::string* out) {
  char bytes[4] = {static_cast<char>(v), static_cast<char>(v >> 8), static_cast<char>(v >> 16),
                   static_cast<char>(v >> 24)};
  out->append(bytes, 4);
}

// Reads from a string_view that it consumes; false when too short.
class Reader {
 public:
  explicit Reader(absl::string_view bytes) : rest_(bytes) {}
  bool U32(uint32_t* v) {
    if (rest_.size() < 4) return false;
    const auto* p = reinterpret_cast<const unsigned char*>(rest_.data());
    *v = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
    rest_.remove_prefix(4);
    return true;
  }
  bool Bytes(size_t n, absl::string_view* out) {
    if (rest_.size() < n) return false;
    *out = rest_.substr(0, n);
    rest_.remove_prefix(n);
    return true;
  }
  absl::string_view rest() const { return rest_; }

 private:
  absl::string_view rest_;
};

constexpr size_t kHeaderBytes = 4 + 1 + 4 + 4;

}  // namespace

absl::string_view ElementTypeName(ElementType type) {
  return type == ElementType::kFloat16 ? "fp16" : "fp32";
}

absl::StatusOr<ElementType> ParseElementType(absl::string_view name, absl::string_view field) {
  if (name == "fp32") return ElementType::kFloat32;
  if (name == "fp16") return ElementType::kFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": \"", name, "\" is not an element type (fp32 or fp16)"));
}

std::string EncodeVectorRecord(const VectorRecord& record, ElementType type) {
  std::string out(4, '\0');
  out.push_back(static_cast<char>(type));
  PutU32(static_cast<uint32_t>(record.values.size()), &out);
  PutU32(static_cast<uint32_t>(record.metadata.size()), &out);
  for (const auto& [key, value] : record.metadata) {
    PutU32(static_cast<uint32_t>(key.size()), &out);
    out.append(key);
    PutU32(static_cast<uint32_t>(value.size()), &out);
    out.append(value);
  }
  for (float v : record.values) {
    if (type == ElementType::kFloat16) {
      const kernels::Fp16Bits h = kernels::FloatToFp16(v);
      out.push_back(static_cast<char>(h));
      out.push_back(static_cast<char>(h >> 8));
    } else {
      uint32_t bits;
      std::memcpy(&bits, &v, 4);
      PutU32(bits, &out);
    }
  }
  const uint32_t crc = base::Crc32c(absl::string_view(out).substr(4));
  std::string crc_bytes;
  PutU32(crc, &crc_bytes);
  out.replace(0, 4, crc_bytes);
  return out;
}

absl::StatusOr<VectorRecord> DecodeVectorRecord(absl::string_view id, absl::string_view bytes,
                                                ElementType type, int64_t dims) {
  auto damaged = [&](absl::string_view what) {
    return absl::DataLossError(absl::StrCat("vector \"", id, "\": ", what, " (", bytes.size(),
                                            " stored bytes)"));
  };
  if (bytes.size() < kHeaderBytes) return damaged("shorter than its header");
  Reader reader(bytes);
  uint32_t stored_crc = 0;
  reader.U32(&stored_crc);
  const uint32_t crc = base::Crc32c(bytes.substr(4));
  if (crc != stored_crc) {
    return damaged(absl::StrFormat("checksum mismatch (stored %08x, computed %08x)", stored_crc,
                                   crc));
  }
  absl::string_view type_byte;
  reader.Bytes(1, &type_byte);
  if (static_cast<uint8_t>(type_byte[0]) != static_cast<uint8_t>(type)) {
    return damaged(absl::StrCat("element type ", static_cast<int>(type_byte[0]),
                                ", not the index's ", ElementTypeName(type)));
  }
  uint32_t stored_dims = 0, entries = 0;
  reader.U32(&stored_dims);
  reader.U32(&entries);
  if (stored_dims != dims) {
    return damaged(absl::StrCat(stored_dims, " dimensions, not the index's ", dims));
  }
  VectorRecord record;
  record.id = std::string(id);
  for (uint32_t e = 0; e < entries; ++e) {
    uint32_t key_bytes = 0, value_bytes = 0;
    absl::string_view key, value;
    if (!reader.U32(&key_bytes) || !reader.Bytes(key_bytes, &key) || !reader.U32(&value_bytes) ||
        !reader.Bytes(value_bytes, &value)) {
      return damaged("metadata runs past the end");
    }
    record.metadata.emplace_back(std::string(key), std::string(value));
  }
  const size_t element_bytes = type == ElementType::kFloat16 ? 2 : 4;
  if (reader.rest().size() != dims * element_bytes) {
    return damaged(absl::StrCat(reader.rest().size(), " bytes of values, not ",
                                dims * element_bytes));
  }
  record.values.resize(dims);
  const auto* p = reinterpret_cast<const unsigned char*>(reader.rest().data());
  for (int64_t i = 0; i < dims; ++i) {
    if (type == ElementType::kFloat16) {
      record.values[i] = kernels::Fp16ToFloat(static_cast<kernels::Fp16Bits>(p[0] | (p[1] << 8)));
      p += 2;
    } else {
      const uint32_t bits = p[0] | (p[1] << 8) | (p[2] << 16) | (static_cast<uint32_t>(p[3]) << 24);
      std::memcpy(&record.values[i], &bits, 4);
      p += 4;
    }
  }
  return record;
}

}  // namespace maximus::embedding
