#include "kernels/random.h"

namespace maximus::kernels {

void FillNormal(float* out, int64_t count, uint64_t seed, float stddev, uint64_t offset) {
  for (int64_t i = 0; i < count; ++i) {
    out[i] = static_cast<float>(stddev * NormalAt(seed, offset + static_cast<uint64_t>(i)));
  }
}

}  // namespace maximus::kernels
