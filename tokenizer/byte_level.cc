#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace maximus::tokenizer {

const ByteLevelAlphabet& ByteLevelAlphabet::Get() {
  static const ByteLevelAlphabet* alphabet = new ByteLevelAlphabet();
  return *alphabet;
}

ByteLevelAlphabet::ByteLevelAlphabet() {
  cp_to_byte_.fill(-1);
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    byte_to_cp_[b] = printable ? b : next++;
  }
  for (int b = 0; b < 256; ++b) {
    cp_to_byte_[byte_to_cp_[b]] = static_cast<int16_t>(b);
    AppendUtf8(byte_to_cp_[b], &utf8_[b]);
  }
}

void ByteLevelAlphabet::Encode(absl::string_view text, std::string* out) const {
  out->reserve(out->size() + text.size() * 2);
  for (const char c : text) out->append(utf8_[static_cast<uint8_t>(c)]);
}

}  // namespace maximus::tokenizer
