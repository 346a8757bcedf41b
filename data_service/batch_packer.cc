#include "data_service/batch_packer.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

namespace maximus::data {
namespace {

// Largest batch, in tokens: keeps a batch message well under gRPC's 2 GiB.
constexpr uint64_t kMaxBatchTokens = uint64_t{1} << 27;

absl::Status CheckSameSelection(const Selection& want, const Selection& got) {
  auto differs = [](absl::string_view field, auto a, auto b) {
    return absl::InvalidArgumentError(absl::StrCat("resume.selection.", field, " is ", b,
                                                   " but the stream's selection.", field, " is ", a,
                                                   "; a cursor resumes only its own stream"));
  };
  if (want.split() != got.split()) return differs("split", want.split(), got.split());
  if (want.seed() != got.seed()) return differs("seed", want.seed(), got.seed());
  if (want.rank() != got.rank()) return differs("rank", want.rank(), got.rank());
  if (want.world_size() != got.world_size()) {
    return differs("world_size", want.world_size(), got.world_size());
  }
  if (want.validation_fraction() != got.validation_fraction()) {
    return differs("validation_fraction", want.validation_fraction(), got.validation_fraction());
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateStreamRequest(const StreamBatchesRequest& request) {
  MAXIMUS_RETURN_IF_ERROR(ValidateSelection(request.selection()));
  if (request.seq_len() < 1 || request.seq_len() > kMaxSeqLen) {
    return absl::InvalidArgumentError(
        absl::StrCat("seq_len ", request.seq_len(), " outside [1, ", kMaxSeqLen, "]"));
  }
  if (request.batch_size() < 1 || request.batch_size() > kMaxBatchSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch_size ", request.batch_size(), " outside [1, ", kMaxBatchSize, "]"));
  }
  const uint64_t tokens = uint64_t{request.batch_size()} * (request.seq_len() + 1);
  if (tokens > kMaxBatchTokens) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size * (seq_len + 1) = ", tokens,
                                                   " tokens; at most ", kMaxBatchTokens));
  }
  if (request.has_resume()) {
    const StreamCursor& cursor = request.resume();
    MAXIMUS_RETURN_IF_ERROR(CheckSameSelection(request.selection(), cursor.selection()));
    if (!cursor.document_id().empty() && cursor.document_id().size() != sizeof(RawId)) {
      return absl::InvalidArgumentError(
          absl::StrCat("resume.document_id has ", cursor.document_id().size(), " bytes, not 32"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<BatchPacker>> BatchPacker::Open(DocumentSource* source,
                                                               const StreamBatchesRequest& request,
                                                               int32_t eos_id) {
  MAXIMUS_RETURN_IF_ERROR(ValidateStreamRequest(request));
  if (eos_id < 0) return absl::FailedPreconditionError("the store has no end-of-text token");
  std::unique_ptr<BatchPacker> packer(new BatchPacker(source, request, eos_id));
  const StreamCursor& resume = request.resume();
  packer->epoch_ = resume.epoch();
  packer->cursor_ = resume;
  *packer->cursor_.mutable_selection() = request.selection();
  if (request.num_epochs() != 0 && packer->epoch_ >= request.num_epochs()) {
    packer->ended_ = true;
    return packer;
  }
  EpochPosition from;
  if (!resume.document_id().empty()) {
    from.from_start = false;
    from.key = resume.document_key();
    IdFromBytes(resume.document_id(), &from.id);
  }
  MAXIMUS_RETURN_IF_ERROR(packer->OpenEpoch(from));
  if (from.from_start) return packer;
  // Continue inside the cursor's document, if it is still there.
  MAXIMUS_ASSIGN_OR_RETURN(const bool got, packer->reader_->Next(&packer->document_));
  if (!got) return packer;
  packer->has_document_ = true;
  ++packer->documents_in_epoch_;
  const SequencedDocument& doc = packer->document_;
  if (doc.key == from.key && doc.id == from.id) {
    if (resume.consumed() > doc.tokens.size() + 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("resume.consumed ", resume.consumed(), " is past the end of document ",
                       HexId(doc.id), " (", doc.tokens.size(), " tokens and the end-of-text)"));
    }
    packer->consumed_ = resume.consumed();
  }
  return packer;
}

BatchPacker::BatchPacker(DocumentSource* source, const StreamBatchesRequest& request,
                         int32_t eos_id)
    : source_(source), request_(request), eos_id_(eos_id), row_length_(request.seq_len() + 1) {}

absl::Status BatchPacker::OpenEpoch(const EpochPosition& from) {
  MAXIMUS_ASSIGN_OR_RETURN(reader_, source_->OpenEpoch(request_.selection(), epoch_, from));
  documents_in_epoch_ = 0;
  return absl::OkStatus();
}

absl::StatusOr<bool> BatchPacker::Advance() {
  while (!has_document_ || consumed_ > document_.tokens.size()) {
    if (ended_) return false;
    has_document_ = false;
    MAXIMUS_ASSIGN_OR_RETURN(const bool got, reader_->Next(&document_));
    if (got) {
      has_document_ = true;
      consumed_ = 0;
      ++documents_in_epoch_;
      continue;
    }
    empty_epochs_ = documents_in_epoch_ == 0 ? empty_epochs_ + 1 : 0;
    if (empty_epochs_ >= kMaxEmptyEpochs) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rank ", request_.selection().rank(), " of ", request_.selection().world_size(),
          " found no document of its split in ", kMaxEmptyEpochs,
          " epochs in a row: the split is empty or too small for the world size"));
    }
    ++epoch_;
    if (request_.num_epochs() != 0 && epoch_ >= request_.num_epochs()) {
      ended_ = true;
      return false;
    }
    MAXIMUS_RETURN_IF_ERROR(OpenEpoch(EpochPosition()));
  }
  return true;
}

absl::StatusOr<bool> BatchPacker::Next(PackedBatch* batch) {
  const size_t capacity = size_t{request_.batch_size()} * row_length_;
  std::string tokens(capacity * sizeof(int32_t), '\0');
  std::string mask(capacity, '\1');
  auto* out = reinterpret_cast<int32_t*>(tokens.data());
  bool masked = false;
  uint64_t first_epoch = epoch_;
  size_t filled = 0;
  while (filled < capacity) {
    MAXIMUS_ASSIGN_OR_RETURN(const bool more, Advance());
    if (!more) break;
    if (filled == 0) first_epoch = epoch_;
    const SequencedDocument& doc = document_;
    const size_t length = doc.tokens.size();
    if (consumed_ < length) {
      const size_t n = std::min(length - consumed_, capacity - filled);
      std::memcpy(out + filled, doc.tokens.data() + consumed_, n * sizeof(int32_t));
      if (!doc.loss_mask.empty()) {
        std::memcpy(mask.data() + filled, doc.loss_mask.data() + consumed_, n);
        masked = masked || std::memchr(doc.loss_mask.data() + consumed_, 0, n) != nullptr;
      }
      consumed_ += n;
      filled += n;
    } else {
      out[filled] = eos_id_;
      if (!doc.loss_mask.empty() && doc.loss_mask.back() == 0) {
        mask[filled] = 0;
        masked = true;
      }
      ++consumed_;
      ++filled;
    }
    cursor_.set_epoch(epoch_);
    cursor_.set_document_key(document_.key);
    cursor_.set_document_id(std::string(IdBytes(document_.id)));
    cursor_.set_consumed(consumed_);
  }
  if (filled == 0) return false;
  const size_t rows = (filled + row_length_ - 1) / row_length_;
  const size_t used = rows * row_length_;
  // The end of a bounded stream: pad the last row, outside the loss.
  for (size_t i = filled; i < used; ++i) {
    out[i] = eos_id_;
    mask[i] = 0;
    masked = true;
  }
  tokens.resize(used * sizeof(int32_t));
  mask.resize(masked ? used : 0);
  batch->Clear();
  batch->set_rows(static_cast<uint32_t>(rows));
  batch->set_row_length(row_length_);
  *batch->mutable_tokens() = std::move(tokens);
  *batch->mutable_loss_mask() = std::move(mask);
  batch->set_epoch(first_epoch);
  *batch->mutable_next() = cursor_;
  return true;
}

}  // namespace maximus::data
