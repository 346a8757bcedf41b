// SHA-256 (FIPS 180-4) through OpenSSL's libcrypto: tokenizer and document
// fingerprints.

#ifndef MAXIMUS_BASE_SHA256_H_
#define MAXIMUS_BASE_SHA256_H_

#include <string>

#include "absl/strings/string_view.h"

namespace maximus::base {

// Lowercase hex digest of `data`.
std::string Sha256Hex(absl::string_view data);

}  // namespace maximus::base

#endif  // MAXIMUS_BASE_SHA256_H_
