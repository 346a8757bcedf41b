#include "tokenizer/post_processor.h"

namespace maximus::tokenizer {

std::vector<int32_t> TemplateProcessor::Process(std::vector<int32_t> ids) const {
  std::vector<int32_t> out;
  out.reserve(ids.size() + 4);
  for (const Piece& piece : single_) {
    if (piece.is_sequence) {
      out.insert(out.end(), ids.begin(), ids.end());
    } else {
      out.insert(out.end(), piece.ids.begin(), piece.ids.end());
    }
  }
  return out;
}

std::vector<int32_t> TemplateProcessor::SpecialIds() const {
  std::vector<int32_t> out;
  for (const Piece& piece : single_) out.insert(out.end(), piece.ids.begin(), piece.ids.end());
  return out;
}

std::vector<int32_t> SequenceProcessor::Process(std::vector<int32_t> ids) const {
  for (const auto& step : steps_) ids = step->Process(std::move(ids));
  return ids;
}

std::vector<int32_t> SequenceProcessor::SpecialIds() const {
  std::vector<int32_t> out;
  for (const auto& step : steps_) {
    const std::vector<int32_t> ids = step->SpecialIds();
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

}  // namespace maximus::tokenizer
