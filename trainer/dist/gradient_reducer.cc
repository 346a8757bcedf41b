#include "trainer/dist/gradient_reducer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace maximus::trainer::dist {

GradientReducer::GradientReducer(Communicator* communicator, Backend* backend,
                                 ParameterArena* arena, int64_t vocab, int64_t hidden,
                                 GradientReducerOptions options)
    : communicator_(communicator),
      backend_(backend),
      arena_(arena),
      vocab_(vocab),
      hidden_(hidden),
      options_(options),
      // A single process reduces nothing: no per-row bookkeeping on its steps.
      touched_(communicator->world_size() > 1 ? vocab : 0, 0) {
  BeginStep();
}

void GradientReducer::BeginStep() {
  started_from_ = arena_->size();
  std::fill(touched_.begin(), touched_.end(), 0);
  dense_ = false;
  stats_ = ReductionStats();
}

absl::Status GradientReducer::StartBucket(int64_t begin, int64_t end) {
  if (begin >= end) return absl::OkStatus();
  MAXIMUS_RETURN_IF_ERROR(
      communicator_->StartAllReduceSum(arena_->grads().data() + begin, end - begin));
  ++stats_.buckets;
  stats_.dense_elements += end - begin;
  started_from_ = begin;
  return absl::OkStatus();
}

absl::Status GradientReducer::GradientsReadyFrom(int64_t offset) {
  if (communicator_->world_size() == 1) return absl::OkStatus();
  // Never into the embedding: it is final only at the end of the backward.
  offset = std::max(offset, vocab_ * hidden_);
  if (started_from_ - offset < options_.bucket_elements) return absl::OkStatus();
  return StartBucket(offset, started_from_);
}

void GradientReducer::AddEmbeddingRows(absl::Span<const int32_t> ids) {
  if (communicator_->world_size() == 1) return;
  for (const int32_t id : ids) {
    if (id >= 0 && id < vocab_) touched_[id] = 1;
  }
}

void GradientReducer::MarkEmbeddingDense() { dense_ = true; }

absl::Status GradientReducer::FinishStep() {
  if (communicator_->world_size() == 1) return absl::OkStatus();
  const int64_t embedding = vocab_ * hidden_;
  MAXIMUS_RETURN_IF_ERROR(StartBucket(embedding, started_from_));
  // The buckets end before the embedding's collectives start (one stream of
  // collectives per communicator). No host wait on the backend here: a
  // stalled peer must surface in a collective's timeout, not hang a copy.
  MAXIMUS_RETURN_IF_ERROR(communicator_->WaitStarted());
  return ReduceEmbedding();
}

absl::Status GradientReducer::ReduceEmbedding() {
  const int64_t embedding = vocab_ * hidden_;
  float* grads = arena_->grads().data();
  auto reduce_whole_table = [&] {
    stats_.dense_elements += embedding;
    return communicator_->StartAllReduceSum(grads, embedding);
  };
  if (options_.sparse_max_fraction <= 0) return reduce_whole_table();
  // Which rows any rank touched (and whether any rank's gradient is dense):
  // one count per row, summed over the ranks on the host.
  std::vector<double> presence(vocab_ + 1);
  for (int64_t v = 0; v < vocab_; ++v) presence[v] = touched_[v];
  presence[vocab_] = dense_ ? 1.0 : 0.0;
  MAXIMUS_RETURN_IF_ERROR(communicator_->AllReduceSumHost(absl::MakeSpan(presence)));
  std::vector<int32_t> rows;
  for (int64_t v = 0; v < vocab_; ++v) {
    if (presence[v] > 0) rows.push_back(static_cast<int32_t>(v));
  }
  const bool sparse = presence[vocab_] == 0 &&
                      static_cast<double>(rows.size()) <= options_.sparse_max_fraction * vocab_;
  if (!sparse) return reduce_whole_table();
  stats_.embedding_sparse = true;
  stats_.embedding_rows = static_cast<int64_t>(rows.size());
  if (rows.empty()) return absl::OkStatus();
  const int64_t n = static_cast<int64_t>(rows.size());
  if (ids_ == nullptr || ids_->size() < n) ids_ = backend_->Allocate(n, DType::kI32);
  if (packed_ == nullptr || packed_->size() < n * hidden_) {
    packed_ = backend_->Allocate(n * hidden_);
  }
  backend_->CopyIdsFromHost(rows.data(), n, ids_.get());
  const int32_t* ids = static_cast<const int32_t*>(ids_->raw());
  float* packed = packed_->data();
  // Packed = this rank's rows; the table's rows become exactly zero (x + -x),
  // then receive the sum: every rank ends with the same bits.
  backend_->Embed(ids, n, grads, hidden_, 1.0f, packed);
  backend_->EmbedBackward(ids, n, packed, hidden_, -1.0f, grads);
  MAXIMUS_RETURN_IF_ERROR(communicator_->AllReduceSum(packed, n * hidden_));
  backend_->EmbedBackward(ids, n, packed, hidden_, 1.0f, grads);
  return absl::OkStatus();
}

}  // namespace maximus::trainer::dist
