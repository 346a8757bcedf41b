// The id of a tokenizer's end-of-text token, which separates documents in
// packed training data and stops generation.

#ifndef MAXIMUS_TOKENIZER_END_OF_TEXT_H_
#define MAXIMUS_TOKENIZER_END_OF_TEXT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "tokenizer/tokenizer.h"

namespace maximus::tokenizer {

// The first of "<eos>" (Gemma), "<|end_of_text|>" (Llama 3), "<|endoftext|>"
// (GPT-style) and "</s>" that the vocabulary holds; NOT_FOUND naming them
// all otherwise.
absl::StatusOr<int32_t> EndOfTextId(const Tokenizer& tokenizer);

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_END_OF_TEXT_H_
