#include "embedding_service/embedder.h"

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "trainer/backend/select_backend.h"
#include "trainer/io/checkpoint.h"
#include "trainer/io/hf_import.h"
#include "trainer/model/inference.h"

namespace maximus::embedding {

Embedder::~Embedder() = default;

absl::StatusOr<std::unique_ptr<Embedder>> Embedder::Load(const std::string& checkpoint_dir,
                                                         const std::string& tokenizer_path,
                                                         const Options& options) {
  if (options.max_tokens < 1 || options.batch_tokens < options.max_tokens + 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_tokens (", options.max_tokens, ") must be positive and batch_tokens (",
        options.batch_tokens, ") hold at least one text of max_tokens + 1 tokens"));
  }
  std::unique_ptr<Embedder> embedder(new Embedder());
  embedder->options_ = options;
  const std::string tokenizer_file =
      tokenizer_path.empty() ? checkpoint_dir + "/tokenizer.json" : tokenizer_path;
  MAXIMUS_ASSIGN_OR_RETURN(embedder->tokenizer_, tokenizer::Tokenizer::FromFile(tokenizer_file));
  MAXIMUS_ASSIGN_OR_RETURN(embedder->backend_,
                           trainer::MakeBackend(options.backend, &embedder->backend_description_));
  // Ours: a checkpoint, a checkpoints/ directory or a run directory (as
  // LoadModelForInference resolves them); anything else: Hugging Face.
  const bool ours = std::filesystem::exists(checkpoint_dir + "/checkpoint.json") ||
                    std::filesystem::exists(checkpoint_dir + "/latest") ||
                    std::filesystem::exists(checkpoint_dir + "/checkpoints/latest");
  if (ours) {
    MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<trainer::LoadedModel> loaded,
                             trainer::LoadModelForInference(embedder->backend_.get(),
                                                            checkpoint_dir, *embedder->tokenizer_));
    embedder->model_ = std::move(loaded->model);
  } else {
    MAXIMUS_ASSIGN_OR_RETURN(embedder->model_,
                             trainer::LoadHfModel(checkpoint_dir, embedder->backend_.get()));
  }
  // The model's ids, as the trainer requires: added tokens past them (Gemma 3's
  // 262,145th) are never embedded.
  if (embedder->tokenizer_->model().vocab_size() > embedder->model_->config().vocab_size) {
    return absl::FailedPreconditionError(absl::StrCat(
        "the tokenizer ", tokenizer_file, " has ", embedder->tokenizer_->model().vocab_size(),
        " tokens, more than the model's vocabulary of ", embedder->model_->config().vocab_size));
  }
  embedder->document_start_ = trainer::DocumentStartId(*embedder->tokenizer_);
  return embedder;
}

absl::StatusOr<std::vector<std::vector<float>>> Embedder::Embed(
    absl::Span<const std::string> texts, Pooling pooling) {
  const int64_t n = static_cast<int64_t>(texts.size());
  std::vector<std::vector<int32_t>> sequences(n);
  for (int64_t i = 0; i < n; ++i) {
    if (texts[i].empty()) {
      return absl::InvalidArgumentError(absl::StrCat("texts[", i, "] is empty"));
    }
    absl::StatusOr<std::vector<int32_t>> ids = tokenizer_->Encode(texts[i]);
    if (!ids.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("texts[", i, "]: ", ids.status().message()));
    }
    if (ids->empty()) return absl::InvalidArgumentError(absl::StrCat("texts[", i, "] has no tokens"));
    if (static_cast<int64_t>(ids->size()) > options_.max_tokens) ids->resize(options_.max_tokens);
    if (document_start_ >= 0) sequences[i].push_back(document_start_);
    sequences[i].insert(sequences[i].end(), ids->begin(), ids->end());
  }
  // Longest first, so that each batch pads little.
  std::vector<int64_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return sequences[a].size() > sequences[b].size();
  });
  const int64_t d = dims();
  const int64_t skip = document_start_ >= 0 ? 1 : 0;  // The start is context, not text.
  std::vector<std::vector<float>> pooled(n, std::vector<float>(d, 0.0f));
  absl::MutexLock lock(&mutex_);
  for (int64_t begin = 0; begin < n;) {
    const int64_t seq = static_cast<int64_t>(sequences[order[begin]].size());
    const int64_t rows = std::min(n - begin, std::max<int64_t>(1, options_.batch_tokens / seq));
    trainer::TokenBatch batch;
    batch.rows = rows;
    batch.seq = seq;
    batch.inputs.assign(rows * seq, 0);
    for (int64_t r = 0; r < rows; ++r) {
      const std::vector<int32_t>& s = sequences[order[begin + r]];
      std::copy(s.begin(), s.end(), batch.inputs.begin() + r * seq);
    }
    batch.targets = batch.inputs;
    MAXIMUS_ASSIGN_OR_RETURN(const std::vector<float> hidden, model_->FinalHiddenStates(batch));
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t length = static_cast<int64_t>(sequences[order[begin + r]].size());
      std::vector<float>& out = pooled[order[begin + r]];
      const float* row = hidden.data() + r * seq * d;
      const int64_t first = pooling == Pooling::kLastToken ? length - 1 : skip;
      std::vector<double> sum(d, 0.0);
      for (int64_t t = first; t < length; ++t) {
        for (int64_t j = 0; j < d; ++j) sum[j] += row[t * d + j];
      }
      for (int64_t j = 0; j < d; ++j) out[j] = static_cast<float>(sum[j] / (length - first));
    }
    begin += rows;
  }
  return pooled;
}

}  // namespace maximus::embedding
