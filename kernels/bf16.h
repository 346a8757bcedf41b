// bfloat16 <-> float conversion on the host, bit-exact with CUDA's
// __float2bfloat16 (round to nearest, ties to even; NaN stays NaN).

#ifndef MAXIMUS_KERNELS_BF16_H_
#define MAXIMUS_KERNELS_BF16_H_

#include <cstdint>
#include <cstring>
#include <vector>

namespace maximus::kernels {

// The storage of one bfloat16 value: the high 16 bits of an IEEE float.
using Bf16Bits = uint16_t;

inline Bf16Bits FloatToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu) != 0) {
    return static_cast<Bf16Bits>((bits >> 16) | 0x0040u);  // Quiet NaN.
  }
  const uint32_t rounding_bias = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<Bf16Bits>((bits + rounding_bias) >> 16);
}

inline float Bf16ToFloat(Bf16Bits value) {
  const uint32_t bits = static_cast<uint32_t>(value) << 16;
  float result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

inline std::vector<Bf16Bits> ToBf16(const std::vector<float>& values) {
  std::vector<Bf16Bits> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = FloatToBf16(values[i]);
  return out;
}

inline std::vector<float> FromBf16(const std::vector<Bf16Bits>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = Bf16ToFloat(values[i]);
  return out;
}

// Rounds each value to the nearest bfloat16, keeping float storage: the exact
// inputs a bf16 kernel sees, for computing its reference.
inline std::vector<float> RoundToBf16(const std::vector<float>& values) {
  std::vector<float> out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = Bf16ToFloat(FloatToBf16(values[i]));
  return out;
}

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_BF16_H_
