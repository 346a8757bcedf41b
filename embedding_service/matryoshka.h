// Matryoshka prefix sizes and normalisation. A model trained with MAXIS's
// low-dimensional auxiliary loss has nested embeddings: the first 64 (128,
// 256, ...) dimensions, re-normalised, are an embedding of their own.

#ifndef MAXIMUS_EMBEDDING_SERVICE_MATRYOSHKA_H_
#define MAXIMUS_EMBEDDING_SERVICE_MATRYOSHKA_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace maximus::embedding {

// The smallest prefix: what stage 1 of a search scans.
inline constexpr int64_t kSmallestPrefix = 64;

// The prefix sizes of a `dims`-dimensional embedding: 64, 128, 256, ...
// (doubling while below dims), then dims itself. {dims} when dims <= 64.
std::vector<int64_t> PrefixSizes(int64_t dims);

// The Euclidean norm of values[0, size), accumulated in double.
double PrefixNorm(absl::Span<const float> values, int64_t size);

// values[0, size) / its norm. Zero vectors stay zero (callers refuse them).
std::vector<float> NormalizedPrefix(absl::Span<const float> values, int64_t size);

// INVALID_ARGUMENT naming `field` unless every value is finite and the
// vector is not all zeros (it has no direction to compare).
absl::Status CheckUsableVector(absl::Span<const float> values, absl::string_view field);

}  // namespace maximus::embedding

#endif  // MAXIMUS_EMBEDDING_SERVICE_MATRYOSHKA_H_
