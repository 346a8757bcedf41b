// Matryoshka embeddings from a trained checkpoint, on the model library
// (trainer/model) without the training loop: a text is fed as the model saw
// documents in training (DocumentStartId, then its tokens, at most
// max_tokens of them), and its embedding is the mean of the final hidden
// states over its tokens (or the last token's state). Any prefix of 64, 128,
// ... dimensions of it, re-normalised, is an embedding too (matryoshka.h).
//
// Texts are batched by length (right-padded: attention is causal, so padding
// never reaches a text's own states) on the backend --backend names: the GPU
// when one is usable, else the CPU.

#ifndef MAXIMUS_EMBEDDING_SERVICE_EMBEDDER_H_
#define MAXIMUS_EMBEDDING_SERVICE_EMBEDDER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "tokenizer/tokenizer.h"
#include "trainer/backend/backend.h"
#include "trainer/model/model.h"

namespace maximus::embedding {

enum class Pooling { kMean, kLastToken };

class Embedder {
 public:
  struct Options {
    // "auto", "cpu" or "cuda" (trainer/backend/select_backend.h).
    std::string backend = "auto";
    // Tokens of a text beyond this many are not read.
    int64_t max_tokens = 512;
    // Padded tokens of one forward pass (rows x longest row).
    int64_t batch_tokens = 8192;
  };

  // Loads `checkpoint_dir`: one of ours (a checkpoint directory, a
  // checkpoints/ directory or a run directory; its tokenizer fingerprint must
  // match) or a Hugging Face Gemma 3 folder (config.json and
  // model.safetensors). `tokenizer_path` empty: <checkpoint_dir>/tokenizer.json.
  static absl::StatusOr<std::unique_ptr<Embedder>> Load(const std::string& checkpoint_dir,
                                                        const std::string& tokenizer_path,
                                                        const Options& options);

  ~Embedder();

  // The hidden size: the dimension of the whole embedding.
  int64_t dims() const { return model_->config().hidden; }
  const tokenizer::Tokenizer& tokenizer() const { return *tokenizer_; }
  // What the backend line of MakeBackend said.
  const std::string& backend_description() const { return backend_description_; }

  // The pooled final hidden states of `texts`, [texts][dims], not normalised
  // (NormalizedPrefix gives each Matryoshka size). INVALID_ARGUMENT naming
  // texts[i] for an empty text.
  absl::StatusOr<std::vector<std::vector<float>>> Embed(absl::Span<const std::string> texts,
                                                        Pooling pooling)
      ABSL_LOCKS_EXCLUDED(mutex_);

 private:
  Embedder() = default;

  Options options_;
  std::unique_ptr<tokenizer::Tokenizer> tokenizer_;
  std::unique_ptr<trainer::Backend> backend_;
  std::string backend_description_;
  std::unique_ptr<trainer::Model> model_;
  int32_t document_start_ = -1;
  // The model keeps its activations between calls: one forward at a time.
  absl::Mutex mutex_;
};

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_EMBEDDER_H_
