// GradientReducer: sums a data-parallel step's gradients over the ranks.
//
// The arena's parameters after the embedding are reduced in buckets of about
// bucket_elements, each started as soon as the backward has finished every
// parameter in it (the model reports the arena offset from which gradients
// are final), so that communication overlaps the rest of the backward. The
// tied embedding's gradient is final only at the end; under MAXIS it is
// nonzero in few rows (targets, candidates, inputs), so the ranks agree on
// the union of their rows and reduce just those rows, packed, unless the
// union is a large share of the vocabulary (or exact cross-entropy made it
// dense), when the whole table is reduced.
//
// Per step: BeginStep(); GradientsReadyFrom() from the backward;
// AddEmbeddingRows() / MarkEmbeddingDense() for every micro-batch; then
// FinishStep(), after which the backend ops issued next see the arena's
// gradients summed over ranks, identical on every rank.

#ifndef MAXIMUS_TRAINER_DIST_GRADIENT_REDUCER_H_
#define MAXIMUS_TRAINER_DIST_GRADIENT_REDUCER_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "trainer/backend/backend.h"
#include "trainer/dist/communicator.h"

namespace maximus::trainer::dist {

struct GradientReducerOptions {
  // Elements per bucket (fp32): 8M = 32 MiB, as PyTorch DDP's 25 MiB order.
  int64_t bucket_elements = int64_t{8} << 20;
  // Reduce the embedding's touched rows alone when they are at most this
  // share of the vocabulary; 0 turns the sparse path off.
  double sparse_max_fraction = 0.5;
};

struct ReductionStats {
  int64_t buckets = 0;           // Started for the parameters after the embedding.
  int64_t dense_elements = 0;    // Reduced as dense floats.
  bool embedding_sparse = false;
  int64_t embedding_rows = 0;    // Rows reduced when sparse.
};

class GradientReducer {
 public:
  // The arena's first `vocab` x `hidden` elements are the tied embedding.
  GradientReducer(Communicator* communicator, Backend* backend, ParameterArena* arena,
                  int64_t vocab, int64_t hidden, GradientReducerOptions options = {});

  void BeginStep();
  // Every gradient at arena offsets >= offset is final for this step.
  absl::Status GradientsReadyFrom(int64_t offset);
  // Rows of the embedding this rank's step gave gradient to.
  void AddEmbeddingRows(absl::Span<const int32_t> ids);
  // This rank's embedding gradient is dense (exact cross-entropy).
  void MarkEmbeddingDense();
  absl::Status FinishStep();

  const ReductionStats& last_step() const { return stats_; }

 private:
  absl::Status StartBucket(int64_t begin, int64_t end);
  absl::Status ReduceEmbedding();

  Communicator* communicator_;
  Backend* backend_;
  ParameterArena* arena_;
  const int64_t vocab_;
  const int64_t hidden_;
  const GradientReducerOptions options_;
  int64_t started_from_ = 0;  // Offsets >= this are reduced or in flight.
  std::vector<uint8_t> touched_;  // Per vocabulary row.
  bool dense_ = false;
  ReductionStats stats_;
  // Backend scratch: row ids, packed rows.
  std::unique_ptr<Buffer> ids_;
  std::unique_ptr<Buffer> packed_;
};

}  // namespace maximus::trainer::dist

#endif  // MAXIMUS_TRAINER_DIST_GRADIENT_REDUCER_H_
