// Small tokenizers for the fuzz targets: a Gemma-like byte-fallback BPE and
// a Llama-3-like byte-level BPE with its regex, both as tokenizer.json text.

#ifndef MAXIMUS_TOKENIZER_FUZZ_FUZZ_TOKENIZERS_H_
#define MAXIMUS_TOKENIZER_FUZZ_FUZZ_TOKENIZERS_H_

#include <string>

namespace maximus::tokenizer {

std::string GemmaLikeJson();
std::string ByteLevelJson();

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_FUZZ_FUZZ_TOKENIZERS_H_
