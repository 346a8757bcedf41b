// Counter-based random numbers: value i of a stream depends only on (seed, i),
// so the CPU reference and the CUDA version produce the same values, any
// range can be regenerated, and initialisation is independent of the number
// of threads or the GPU.
//
// u1, u2 = the two 32-bit halves of SplitMix64(seed * 2^32 + i) mapped to
// (0, 1]; normal = sqrt(-2 ln u1) cos(2 pi u2) (Box-Muller, one value per
// counter). The CUDA version is declared in random_cuda.h.

#ifndef MAXIMUS_KERNELS_RANDOM_H_
#define MAXIMUS_KERNELS_RANDOM_H_

#include <cmath>
#include <cstdint>

namespace maximus::kernels {

#if defined(__CUDACC__)
#define MAXIMUS_HOST_DEVICE __host__ __device__
#else
#define MAXIMUS_HOST_DEVICE
#endif

MAXIMUS_HOST_DEVICE inline uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// The i-th standard-normal value of stream `seed` (float64 math on the CPU;
// the GPU's float math agrees to about 1e-6 relative).
inline double NormalAt(uint64_t seed, uint64_t i) {
  const uint64_t bits = SplitMix64((seed << 32) + i);
  const double u1 = (static_cast<double>(bits >> 32) + 1.0) / 4294967296.0;
  const double u2 = (static_cast<double>(bits & 0xffffffffu) + 1.0) / 4294967296.0;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}

// CPU reference: out[i] = stddev * NormalAt(seed, offset + i).
void FillNormal(float* out, int64_t count, uint64_t seed, float stddev, uint64_t offset = 0);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_RANDOM_H_
