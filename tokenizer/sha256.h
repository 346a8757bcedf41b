// SHA-256 (FIPS 180-4), for tokenizer fingerprints.

#ifndef MAXIMUS_TOKENIZER_SHA256_H_
#define MAXIMUS_TOKENIZER_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

// Lowercase hex digest of `data`.
std::string Sha256Hex(absl::string_view data);

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_SHA256_H_
