// The cuBLAS GEMM against the CPU reference, on random non-zero inputs.

#include "kernels/gemm_cuda.h"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "kernels/bf16.h"
#include "kernels/cublas_handle.h"
#include "kernels/device_buffer.h"
#include "kernels/gpu_test_util.h"
#include "kernels/test_util.h"

namespace maximus::kernels {
namespace {

using testing::RandomNormal;
using testing::RelativeError;

struct Precision {
  DType input;
  DType output;
  GemmMath math;
  double bound;  // On ||out - ref|| / ||ref||.
};

// bf16 inputs: the reference sees the same rounded inputs, so only the
// accumulation order (fp32) differs, unless the output is rounded to bf16
// (2^-9 relative per element). tf32 rounds the inputs to 10-bit mantissas.
const Precision kPrecisions[] = {
    {DType::kBFloat16, DType::kFloat32, GemmMath::kFloat32, 2e-5},
    {DType::kBFloat16, DType::kBFloat16, GemmMath::kFloat32, 5e-3},
    {DType::kFloat32, DType::kFloat32, GemmMath::kFloat32, 2e-5},
    {DType::kFloat32, DType::kFloat32, GemmMath::kTf32, 2e-3},
};

struct Shape {
  int64_t m, n, k;
};

const Shape kShapes[] = {
    {1, 1, 1}, {17, 33, 65}, {128, 256, 64}, {257, 129, 513}, {1024, 768, 2048}};

// Uploads host floats as element type T (float or bf16 bits).
template <typename T>
DeviceBuffer<T> Upload(const std::vector<float>& host) {
  absl::StatusOr<DeviceBuffer<T>> buffer;
  if constexpr (std::is_same_v<T, float>) {
    buffer = DeviceBuffer<T>::FromHost(host);
  } else {
    buffer = DeviceBuffer<T>::FromHost(ToBf16(host));
  }
  EXPECT_TRUE(buffer.ok()) << buffer.status();
  return std::move(buffer).value();
}

template <typename T>
std::vector<float> Download(const DeviceBuffer<T>& buffer) {
  absl::StatusOr<std::vector<T>> host = buffer.ToHost();
  EXPECT_TRUE(host.ok()) << host.status();
  if constexpr (std::is_same_v<T, float>) {
    return *host;
  } else {
    return FromBf16(*host);
  }
}

// Runs one case on the GPU with inputs of type In and output of type Out.
template <typename In, typename Out>
std::vector<float> RunOnGpu(const Precision& p, const GemmDims& dims, float alpha, float beta,
                            const std::vector<float>& a, const std::vector<float>& b,
                            const std::vector<float>& c_in) {
  auto handle = CublasHandle::Create();
  EXPECT_TRUE(handle.ok()) << handle.status();
  DeviceBuffer<In> da = Upload<In>(a);
  DeviceBuffer<In> db = Upload<In>(b);
  DeviceBuffer<Out> dc = Upload<Out>(c_in);
  // With beta = 0, C must not be read: poison it with NaN to prove that, and
  // that every element is written.
  if (beta == 0.0f) {
    EXPECT_TRUE(dc.FillBytes(0xff).ok());
  }
  const absl::Status status = GemmCuda(handle->get(), dims, p.input, p.output, alpha, da.data(),
                                       db.data(), beta, dc.data(), p.math);
  EXPECT_TRUE(status.ok()) << status;
  return Download(dc);
}

std::vector<float> RunOnGpu(const Precision& p, const GemmDims& dims, float alpha, float beta,
                            const std::vector<float>& a, const std::vector<float>& b,
                            const std::vector<float>& c) {
  if (p.input == DType::kFloat32) return RunOnGpu<float, float>(p, dims, alpha, beta, a, b, c);
  if (p.output == DType::kFloat32) {
    return RunOnGpu<Bf16Bits, float>(p, dims, alpha, beta, a, b, c);
  }
  return RunOnGpu<Bf16Bits, Bf16Bits>(p, dims, alpha, beta, a, b, c);
}

TEST(GemmCudaTest, MatchesCpuReference) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  uint64_t seed = 100;
  for (const Precision& p : kPrecisions) {
    for (const Shape& s : kShapes) {
      for (int transposes = 0; transposes < 4; ++transposes) {
        for (float beta : {0.0f, 0.75f}) {
          const GemmDims dims{s.m, s.n, s.k, (transposes & 1) != 0, (transposes & 2) != 0};
          const float alpha = 1.25f;
          std::vector<float> a = RandomNormal(dims.m * dims.k, ++seed);
          std::vector<float> b = RandomNormal(dims.k * dims.n, ++seed);
          std::vector<float> c = RandomNormal(dims.m * dims.n, ++seed);
          if (p.input == DType::kBFloat16) {
            a = RoundToBf16(a);
            b = RoundToBf16(b);
          }
          if (p.output == DType::kBFloat16) c = RoundToBf16(c);
          const std::vector<float> out = RunOnGpu(p, dims, alpha, beta, a, b, c);
          std::vector<float> expected = c;
          ASSERT_TRUE(Gemm(dims, alpha, a.data(), b.data(), beta, expected.data()).ok());
          const double error = RelativeError(out, expected);
          EXPECT_LT(error, p.bound) << absl::StrFormat(
              "%s->%s%s m=%d n=%d k=%d ta=%d tb=%d beta=%g: relative error %.3g",
              DTypeName(p.input), DTypeName(p.output), p.math == GemmMath::kTf32 ? " tf32" : "",
              dims.m, dims.n, dims.k, dims.transpose_a, dims.transpose_b, beta, error);
        }
      }
    }
  }
}

TEST(GemmCudaTest, LeadingDimensionsSelectSlices) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  // C[:, :64] += A[:, :64] · B[:, :64]ᵀ inside wider row-major buffers, as
  // the Matryoshka (first-64-dimension) terms of the losses use it.
  const int64_t m = 300, n = 200, width = 640, low = 64;
  GemmDims dims{m, n, low, false, true};
  dims.lda = width;
  dims.ldb = width;
  dims.ldc = width;
  const std::vector<float> a = RoundToBf16(RandomNormal(m * width, 41));
  const std::vector<float> b = RoundToBf16(RandomNormal(n * width, 42));
  const std::vector<float> c = RandomNormal(m * width, 43);
  const Precision p{DType::kBFloat16, DType::kFloat32, GemmMath::kFloat32, 2e-5};
  const std::vector<float> out = RunOnGpu(p, dims, 1.0f, 1.0f, a, b, c);
  std::vector<float> expected = c;
  ASSERT_TRUE(Gemm(dims, 1.0f, a.data(), b.data(), 1.0f, expected.data()).ok());
  EXPECT_LT(RelativeError(out, expected), 2e-5);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = n; j < width; j += 37) ASSERT_EQ(out[i * width + j], c[i * width + j]);
  }
}

TEST(GemmCudaTest, RejectsUnsupportedCombinations) {
  MAXIMUS_SKIP_WITHOUT_GPU();
  auto handle = CublasHandle::Create();
  ASSERT_TRUE(handle.ok());
  auto buffer = DeviceBuffer<float>::Allocate(16);
  ASSERT_TRUE(buffer.ok());
  const GemmDims dims{4, 4, 1};
  EXPECT_EQ(GemmCuda(handle->get(), dims, DType::kFloat32, DType::kBFloat16, 1, buffer->data(),
                     buffer->data(), 0, buffer->data())
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GemmCuda(handle->get(), dims, DType::kBFloat16, DType::kFloat32, 1, buffer->data(),
                     buffer->data(), 0, buffer->data(), GemmMath::kTf32)
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(GemmCuda(handle->get(), GemmDims{0, 4, 4}, DType::kFloat32, DType::kFloat32, 1,
                     buffer->data(), buffer->data(), 0, buffer->data())
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace maximus::kernels
