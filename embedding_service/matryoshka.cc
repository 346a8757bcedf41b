#include "embedding_service/matryoshka.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace maximus::embedding {

std::vector<int64_t> PrefixSizes(int64_t dims) {
  std::vector<int64_t> sizes;
  for (int64_t size = kSmallestPrefix; size < dims; size *= 2) sizes.push_back(size);
  sizes.push_back(dims);
  return sizes;
}

double PrefixNorm(absl::Span<const float> values, int64_t size) {
  double sum = 0;
  for (int64_t i = 0; i < size; ++i) sum += static_cast<double>(values[i]) * values[i];
  return std::sqrt(sum);
}

std::vector<float> NormalizedPrefix(absl::Span<const float> values, int64_t size) {
  std::vector<float> out(values.begin(), values.begin() + size);
  const double norm = PrefixNorm(values, size);
  if (norm > 0) {
    for (float& v : out) v = static_cast<float>(v / norm);
  }
  return out;
}

absl::Status CheckUsableVector(absl::Span<const float> values, absl::string_view field) {
  bool nonzero = false;
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, "[", i, "] is ", values[i], "; every value must be finite"));
    }
    nonzero = nonzero || values[i] != 0;
  }
  if (!nonzero) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " is all zeros: it has no direction to compare"));
  }
  return absl::OkStatus();
}

}  // namespace maximus::embedding
