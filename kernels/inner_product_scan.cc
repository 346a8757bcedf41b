#include "kernels/inner_product_scan.h"

#include <immintrin.h>

namespace maximus::kernels {
namespace {

// Per-row dot products, in double for a reference that rounds once.
template <typename Row, typename ToFloat>
void ScanReference(const float* query, int64_t dims, const Row* rows, int64_t n, int64_t stride,
                   float* out, ToFloat to_float) {
  for (int64_t i = 0; i < n; ++i) {
    const Row* row = rows + i * stride;
    double sum = 0;
    for (int64_t j = 0; j < dims; ++j) sum += static_cast<double>(query[j]) * to_float(row[j]);
    out[i] = static_cast<float>(sum);
  }
}

__attribute__((target("avx2,fma"))) inline float HorizontalSum(__m256 v) {
  const __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
  return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}

__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const float* p) {
  return _mm256_loadu_ps(p);
}
__attribute__((target("avx2,fma,f16c"))) inline __m256 Load8(const Fp16Bits* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float ToFloat(float x) { return x; }
inline float ToFloat(Fp16Bits x) { return Fp16ToFloat(x); }

// Four rows at a time, so that each query chunk loaded feeds four FMAs and
// four independent accumulator chains hide the FMA latency.
template <typename Row>
__attribute__((target("avx2,fma,f16c"))) void ScanAvx2(const float* query, int64_t dims,
                                                       const Row* rows, int64_t n,
                                                       int64_t stride, float* out) {
  const int64_t vector_dims = dims & ~int64_t{7};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const Row* r0 = rows + i * stride;
    const Row* r1 = r0 + stride;
    const Row* r2 = r1 + stride;
    const Row* r3 = r2 + stride;
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(),
           a3 = _mm256_setzero_ps();
    for (int64_t j = 0; j < vector_dims; j += 8) {
      const __m256 q = _mm256_loadu_ps(query + j);
      a0 = _mm256_fmadd_ps(q, Load8(r0 + j), a0);
      a1 = _mm256_fmadd_ps(q, Load8(r1 + j), a1);
      a2 = _mm256_fmadd_ps(q, Load8(r2 + j), a2);
      a3 = _mm256_fmadd_ps(q, Load8(r3 + j), a3);
    }
    float s0 = HorizontalSum(a0), s1 = HorizontalSum(a1), s2 = HorizontalSum(a2),
          s3 = HorizontalSum(a3);
    for (int64_t j = vector_dims; j < dims; ++j) {
      s0 += query[j] * ToFloat(r0[j]);
      s1 += query[j] * ToFloat(r1[j]);
      s2 += query[j] * ToFloat(r2[j]);
      s3 += query[j] * ToFloat(r3[j]);
    }
    out[i] = s0;
    out[i + 1] = s1;
    out[i + 2] = s2;
    out[i + 3] = s3;
  }
  for (; i < n; ++i) {
    const Row* r = rows + i * stride;
    __m256 a = _mm256_setzero_ps();
    for (int64_t j = 0; j < vector_dims; j += 8) {
      a = _mm256_fmadd_ps(_mm256_loadu_ps(query + j), Load8(r + j), a);
    }
    float s = HorizontalSum(a);
    for (int64_t j = vector_dims; j < dims; ++j) s += query[j] * ToFloat(r[j]);
    out[i] = s;
  }
}

// The AVX2 version where the CPU has it, else the reference.
template <typename Row>
void Scan(const float* query, int64_t dims, const Row* rows, int64_t n, int64_t stride,
          float* out) {
  if (CpuHasAvx2()) {
    ScanAvx2(query, dims, rows, n, stride, out);
  } else {
    ScanReference(query, dims, rows, n, stride, out, [](Row x) { return ToFloat(x); });
  }
}

}  // namespace

bool CpuHasAvx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

void InnerProductScanReference(const float* query, int64_t dims, const float* rows, int64_t n,
                               int64_t stride, float* out) {
  ScanReference(query, dims, rows, n, stride, out, [](float x) { return ToFloat(x); });
}

void InnerProductScanFp16Reference(const float* query, int64_t dims, const Fp16Bits* rows,
                                   int64_t n, int64_t stride, float* out) {
  ScanReference(query, dims, rows, n, stride, out, [](Fp16Bits x) { return ToFloat(x); });
}

void InnerProductScan(const float* query, int64_t dims, const float* rows, int64_t n,
                      int64_t stride, float* out) {
  Scan(query, dims, rows, n, stride, out);
}

void InnerProductScanFp16(const float* query, int64_t dims, const Fp16Bits* rows, int64_t n,
                          int64_t stride, float* out) {
  Scan(query, dims, rows, n, stride, out);
}

}  // namespace maximus::kernels
