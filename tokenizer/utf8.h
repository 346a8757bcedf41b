// UTF-8 helpers shared by the tokenizer pipeline.

#ifndef MAXIMUS_TOKENIZER_UTF8_H_
#define MAXIMUS_TOKENIZER_UTF8_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

inline constexpr char32_t kReplacementChar = 0xFFFD;

// Offset of the first byte that is not part of well-formed UTF-8, or npos.
size_t FindInvalidUtf8(absl::string_view text);

inline bool IsValidUtf8(absl::string_view text) {
  return FindInvalidUtf8(text) == absl::string_view::npos;
}

// Replaces each maximal ill-formed subsequence with U+FFFD, as the WHATWG
// decoder (Node's TextDecoder, Rust's from_utf8_lossy) does.
std::string SanitizeUtf8(absl::string_view text);

// Decodes the code point at text[*pos] (valid UTF-8 assumed) and advances *pos.
inline char32_t NextCodePoint(absl::string_view text, size_t* pos) {
  const auto* s = reinterpret_cast<const uint8_t*>(text.data());
  size_t i = *pos;
  const uint8_t b = s[i];
  if (b < 0x80) {
    *pos = i + 1;
    return b;
  }
  if (b < 0xE0) {
    *pos = i + 2;
    return ((b & 0x1F) << 6) | (s[i + 1] & 0x3F);
  }
  if (b < 0xF0) {
    *pos = i + 3;
    return ((b & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
  }
  *pos = i + 4;
  return ((b & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) |
         (s[i + 3] & 0x3F);
}

// Length in bytes of the UTF-8 sequence that starts with `lead`.
inline size_t Utf8Length(uint8_t lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

void AppendUtf8(char32_t cp, std::string* out);

// JavaScript's definition of white space (String.prototype.trim, /\s/u),
// which the reference tokenizer uses.
bool IsJsWhitespace(char32_t cp);

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_UTF8_H_
