// A small randomly initialised Gemma 3 model with the real tokenizer's
// vocabulary, saved as one of our checkpoints, for the embedder and server
// tests.

#ifndef MAXIMUS_EMBEDDING_SERVICE_TEST_CHECKPOINT_H_
#define MAXIMUS_EMBEDDING_SERVICE_TEST_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"
#include "tokenizer/tokenizer.h"

namespace maximus::embedding {

// Hidden size of the test model: prefixes of 64 and 128.
inline constexpr int64_t kTestModelDims = 128;

// Writes the checkpoint to `dir` (its tokenizer.json copied from
// `tokenizer_path`).
absl::Status WriteTestCheckpoint(const std::string& dir, const std::string& tokenizer_path,
                                 const tokenizer::Tokenizer& tokenizer);

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_TEST_CHECKPOINT_H_
