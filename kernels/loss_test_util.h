// Random problems for the tests of the linear-head losses (cross_entropy,
// maxis), CPU and CUDA alike.

#ifndef MAXIMUS_KERNELS_LOSS_TEST_UTIL_H_
#define MAXIMUS_KERNELS_LOSS_TEST_UTIL_H_

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/cross_entropy.h"
#include "kernels/test_util.h"

namespace maximus::kernels::testing {

struct LinearHeadProblem {
  LinearHeadShape shape;
  std::vector<float> hidden, weight;
  std::vector<int32_t> targets;
  std::vector<uint8_t> mask;  // Empty: no mask.

  LinearHeadInputs Inputs() const {
    return {hidden.data(), weight.data(), targets.data(), mask.empty() ? nullptr : mask.data()};
  }
  bool Unmasked(int64_t i) const { return mask.empty() || mask[i] != 0; }
};

// hidden ~ N(0, hidden_scale²), weight ~ N(0, weight_scale²), uniform
// targets; with `masked`, every third row (starting at 1) is masked.
inline LinearHeadProblem RandomLinearHeadProblem(const LinearHeadShape& shape, uint64_t seed,
                                                 bool masked, float hidden_scale = 1.0f,
                                                 float weight_scale = 0.5f) {
  LinearHeadProblem p;
  p.shape = shape;
  p.hidden = RandomNormal(shape.tokens * shape.hidden, seed, hidden_scale);
  p.weight = RandomNormal(shape.vocab * shape.hidden, seed + 1, weight_scale);
  std::mt19937_64 rng(seed + 2);
  std::uniform_int_distribution<int32_t> id(0, static_cast<int32_t>(shape.vocab - 1));
  p.targets.resize(shape.tokens);
  for (int32_t& y : p.targets) y = id(rng);
  if (masked) {
    p.mask.assign(shape.tokens, 1);
    for (int64_t i = 1; i < shape.tokens; i += 3) p.mask[i] = 0;
  }
  return p;
}

}  // namespace maximus::kernels::testing

#endif  // MAXIMUS_KERNELS_LOSS_TEST_UTIL_H_
