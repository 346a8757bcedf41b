// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of
// stored token documents. RocksDB does not install its own crc32c header.

#ifndef MAXIMUS_BASE_CRC32C_H_
#define MAXIMUS_BASE_CRC32C_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace maximus::base {

// CRC-32C of `data`; Crc32c("123456789") == 0xE3069283.
uint32_t Crc32c(absl::string_view data);

}  // namespace maximus::base

#endif  // MAXIMUS_BASE_CRC32C_H_
