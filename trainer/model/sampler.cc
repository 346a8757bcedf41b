#include "trainer/model/sampler.h"

#include <algorithm>
#include <cmath>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"

namespace maximus::trainer {
namespace {

// Kept token ids and their unnormalised probabilities exp(z - max), after
// steps 1 to 3 (temperature > 0).
struct Candidates {
  std::vector<int32_t> ids;
  std::vector<double> weights;
  double total = 0;
};

Candidates Prepare(const SamplingOptions& options, absl::Span<float> logits,
                   absl::Span<const int32_t> context) {
  ApplyRepetitionPenalty(context, options.repetition_penalty, logits);
  const float inverse_temperature = 1.0f / options.temperature;
  for (float& z : logits) z *= inverse_temperature;
  const int64_t n = static_cast<int64_t>(logits.size());
  // Top-k: the k-th largest logit is the threshold; ties with it stay, as
  // in Hugging Face's TopKLogitsWarper.
  float threshold = -INFINITY;
  if (options.top_k > 0 && options.top_k < n) {
    std::vector<float> sorted(logits.begin(), logits.end());
    std::nth_element(sorted.begin(), sorted.begin() + (options.top_k - 1), sorted.end(),
                     std::greater<float>());
    threshold = sorted[options.top_k - 1];
  }
  Candidates c;
  double max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    if (logits[i] >= threshold && !std::isnan(logits[i])) {
      c.ids.push_back(static_cast<int32_t>(i));
      max = std::max<double>(max, logits[i]);
    }
  }
  if (!std::isfinite(max)) {  // Nothing finite to sample from: fall back to greedy.
    c.ids = {ArgMax(logits)};
    c.weights = {1.0};
    c.total = 1.0;
    return c;
  }
  c.weights.reserve(c.ids.size());
  for (int32_t id : c.ids) {
    c.weights.push_back(std::exp(static_cast<double>(logits[id]) - max));
    c.total += c.weights.back();
  }
  return c;
}

}  // namespace

absl::Status ValidateSamplingOptions(const SamplingOptions& options) {
  if (!(options.temperature >= 0) || !std::isfinite(options.temperature)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--temperature must be a finite number >= 0 (0: greedy), not ", options.temperature));
  }
  if (options.top_k < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--top_k must be >= 0 (0: no limit), not ", options.top_k));
  }
  if (!(options.repetition_penalty > 0) || !std::isfinite(options.repetition_penalty)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--repetition_penalty must be a finite number > 0 (1: none), not ",
                     options.repetition_penalty));
  }
  return absl::OkStatus();
}

void ApplyRepetitionPenalty(absl::Span<const int32_t> context, float penalty,
                            absl::Span<float> logits) {
  if (penalty == 1.0f) return;
  absl::flat_hash_set<int32_t> seen;
  for (int32_t id : context) {
    if (id < 0 || static_cast<size_t>(id) >= logits.size() || !seen.insert(id).second) continue;
    float& z = logits[id];
    z = z > 0 ? z / penalty : z * penalty;
  }
}

int32_t ArgMax(absl::Span<const float> logits) {
  int32_t best = 0;
  for (size_t i = 1; i < logits.size(); ++i) {
    if (logits[i] > logits[best] || std::isnan(logits[best])) best = static_cast<int32_t>(i);
  }
  return best;
}

absl::StatusOr<Sampler> Sampler::Create(const SamplingOptions& options) {
  if (absl::Status s = ValidateSamplingOptions(options); !s.ok()) return s;
  return Sampler(options);
}

int32_t Sampler::Sample(absl::Span<float> logits, absl::Span<const int32_t> context) {
  if (logits.empty()) return -1;
  if (options_.temperature == 0) {
    ApplyRepetitionPenalty(context, options_.repetition_penalty, logits);
    return ArgMax(logits);
  }
  const Candidates c = Prepare(options_, logits, context);
  // A uniform double in [0, 1) from the top 53 bits: the same on every
  // platform, unlike std::uniform_real_distribution.
  const double u = static_cast<double>(rng_() >> 11) * 0x1.0p-53;
  const double target = u * c.total;
  double cumulative = 0;
  for (size_t i = 0; i < c.ids.size(); ++i) {
    cumulative += c.weights[i];
    if (target < cumulative) return c.ids[i];
  }
  return c.ids.back();  // Rounding: u * total landed on the total.
}

std::vector<double> Sampler::Distribution(absl::Span<float> logits,
                                          absl::Span<const int32_t> context) const {
  std::vector<double> p(logits.size(), 0.0);
  if (p.empty()) return p;
  if (options_.temperature == 0) {
    ApplyRepetitionPenalty(context, options_.repetition_penalty, logits);
    p[ArgMax(logits)] = 1.0;
    return p;
  }
  const Candidates c = Prepare(options_, logits, context);
  for (size_t i = 0; i < c.ids.size(); ++i) p[c.ids[i]] = c.weights[i] / c.total;
  return p;
}

}  // namespace maximus::trainer
