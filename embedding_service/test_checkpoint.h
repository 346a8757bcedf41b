// A small randomly initialised Gemma 3 model with the real tokenizer's
// vocabulary, saved as one of our checkpoints, for the embedder and server
// tests.

#ifndef MAXIMUS_EMBEDDING_SERVICE_TEST_CHECKPOINT_H_
#define MAXIMUS_EMBEDDING_SERVICE_TEST_CHECKPOINT_H_

#include <string>

#include "absl/status/status.h"

namespace maximus::embedding {

// Hidden size of the test model: prefixes of 64 and 128.
inline constexpr int64_t kTestModelDims = 128;

// Writes the checkpoint for the tokenizer at `tokenizer_path` to `dir` (the
// tokenizer.json copied into it).
absl::Status WriteTestCheckpoint(const std::string& dir, const std::string& tokenizer_path);

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_TEST_CHECKPOINT_H_
