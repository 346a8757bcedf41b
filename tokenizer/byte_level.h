// GPT-2's reversible map from bytes to printable code points.

#ifndef MAXIMUS_TOKENIZER_BYTE_LEVEL_H_
#define MAXIMUS_TOKENIZER_BYTE_LEVEL_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

class ByteLevelAlphabet {
 public:
  static const ByteLevelAlphabet& Get();

  char32_t CodePoint(uint8_t byte) const { return byte_to_cp_[byte]; }
  // The UTF-8 encoding of CodePoint(byte).
  absl::string_view Utf8(uint8_t byte) const { return utf8_[byte]; }
  // The byte a code point stands for, or -1.
  int Byte(char32_t cp) const { return cp < cp_to_byte_.size() ? cp_to_byte_[cp] : -1; }

  // Every byte of `text` as its code point, in UTF-8.
  void Encode(absl::string_view text, std::string* out) const;

 private:
  ByteLevelAlphabet();

  std::array<char32_t, 256> byte_to_cp_;
  std::array<std::string, 256> utf8_;
  std::array<int16_t, 324> cp_to_byte_;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_BYTE_LEVEL_H_
