// Deterministic varied text for parity tests and fuzz seeds: real English,
// many scripts, emoji and ZWJ sequences, code, runs of white space, strings
// that look like special tokens, and (optionally) ill-formed UTF-8.

#ifndef MAXIMUS_TOKENIZER_PARITY_CORPUS_H_
#define MAXIMUS_TOKENIZER_PARITY_CORPUS_H_

#include <cstdint>
#include <string>
#include <vector>

namespace maximus::tokenizer {

// `count` documents of `min_bytes`..`max_bytes` made from `fragments` (lines
// of real text) and random code points of many scripts; ill-formed bytes are
// mixed in when `invalid_utf8`. The same seed gives the same documents.
std::vector<std::string> SyntheticDocuments(const std::vector<std::string>& fragments,
                                            uint32_t seed, int count, size_t min_bytes,
                                            size_t max_bytes, bool invalid_utf8);

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_PARITY_CORPUS_H_
