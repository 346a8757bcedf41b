// Helpers shared by kernel tests: random inputs and relative error.

#ifndef MAXIMUS_KERNELS_TEST_UTIL_H_
#define MAXIMUS_KERNELS_TEST_UTIL_H_

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace maximus::kernels::testing {

// Standard-normal values, never exactly zero (zeros hide unwritten outputs
// and wrong indexing).
inline std::vector<float> RandomNormal(size_t count, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> values(count);
  for (float& v : values) {
    do {
      v = normal(rng);
    } while (v == 0.0f);
  }
  return values;
}

// ||out - ref|| / ||ref|| in float64; +inf if any output is not finite.
template <typename Out, typename Ref>
double RelativeError(const std::vector<Out>& out, const std::vector<Ref>& ref) {
  if (out.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0.0, norm = 0.0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double o = static_cast<double>(out[i]);
    if (!std::isfinite(o)) return std::numeric_limits<double>::infinity();
    const double r = static_cast<double>(ref[i]);
    diff += (o - r) * (o - r);
    norm += r * r;
  }
  return norm == 0.0 ? std::sqrt(diff) : std::sqrt(diff / norm);
}

}  // namespace maximus::kernels::testing

#endif  // MAXIMUS_KERNELS_TEST_UTIL_H_
