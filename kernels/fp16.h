// IEEE 754 half precision (fp16) <-> float conversion on the host, bit-exact
// with the F16C instructions (round to nearest, ties to even; overflow to
// infinity; subnormals kept; NaN stays NaN).

#ifndef MAXIMUS_KERNELS_FP16_H_
#define MAXIMUS_KERNELS_FP16_H_

#include <cmath>
#include <cstdint>
#include <cstring>

namespace maximus::kernels {

using Fp16Bits = uint16_t;

inline Fp16Bits FloatToFp16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  const uint32_t sign = (bits >> 16) & 0x8000u;
  const uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude >= 0x7f800000u) {  // Infinity or NaN (quiet).
    return static_cast<Fp16Bits>(sign | (magnitude > 0x7f800000u ? 0x7e00u : 0x7c00u));
  }
  if (magnitude >= 0x477ff000u) return static_cast<Fp16Bits>(sign | 0x7c00u);  // >= 65520.
  if (magnitude < 0x38800000u) {
    // Below 2^-14: a multiple of 2^-24, rounded to nearest even by the FPU.
    float abs_value;
    std::memcpy(&abs_value, &magnitude, sizeof(abs_value));
    return static_cast<Fp16Bits>(sign | static_cast<uint32_t>(std::nearbyint(abs_value * 16777216.0f)));
  }
  const uint32_t mantissa = magnitude & 0x7fffffu;
  const uint32_t exponent = (magnitude >> 23) - 127 + 15;
  uint32_t half = (exponent << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fffu;
  // A carry out of the mantissa correctly moves to the next exponent.
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<Fp16Bits>(sign | half);
}

inline float Fp16ToFloat(Fp16Bits value) {
  const uint32_t sign = (static_cast<uint32_t>(value) & 0x8000u) << 16;
  const uint32_t exponent = (value >> 10) & 0x1fu;
  const uint32_t mantissa = value & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * (1.0f / 16777216.0f);
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 31) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent - 15 + 127) << 23) | (mantissa << 13);
  }
  float result;
  std::memcpy(&result, &bits, sizeof(result));
  return result;
}

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_FP16_H_
