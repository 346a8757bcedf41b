// GEMM throughput on the GPU: cuBLAS through GemmCuda, for the precisions the
// trainer uses. GEMMs this large are bound by arithmetic, so the floor is
// 2*m*n*k / peak; the table reports TFLOP/s and the fraction of a peak given
// by --peak_bf16_tflops / --peak_fp32_tflops (measured ceilings, not datasheet).
//
//   bazel run //kernels:bench_gemm -- --sizes=4096,8192

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "kernels/bench_timer.h"
#include "kernels/cast_cuda.h"
#include "kernels/cublas_handle.h"
#include "kernels/device_buffer.h"
#include "kernels/gemm_cuda.h"
#include "kernels/gpu_probe.h"
#include "kernels/test_util.h"

ABSL_FLAG(std::string, sizes, "4096,8192", "Comma-separated square sizes m=n=k.");
ABSL_FLAG(int, warmup, 5, "Untimed runs before timing.");
ABSL_FLAG(int, iters, 30, "Timed runs; the median is reported.");
ABSL_FLAG(double, peak_bf16_tflops, 790.0, "Measured bf16 dense GEMM ceiling of the GPU.");
ABSL_FLAG(double, peak_fp32_tflops, 51.0, "Measured fp32 (non-tensor-core) GEMM ceiling.");

namespace maximus::kernels {
namespace {

struct Variant {
  const char* name;
  DType input;
  DType output;
  GemmMath math;
  bool bf16_peak;
};

int Main() {
  const absl::StatusOr<GpuInfo> gpu = ProbeGpu();
  if (!gpu.ok()) {
    std::fprintf(stderr, "bench_gemm needs a GPU: %s\n",
                 std::string(gpu.status().message()).c_str());
    return 1;
  }
  std::printf("GPU: %s\n", gpu->ToString().c_str());
  const Variant variants[] = {
      {"bf16 -> bf16", DType::kBFloat16, DType::kBFloat16, GemmMath::kFloat32, true},
      {"bf16 -> fp32", DType::kBFloat16, DType::kFloat32, GemmMath::kFloat32, true},
      {"fp32 (tf32)", DType::kFloat32, DType::kFloat32, GemmMath::kTf32, true},
      {"fp32", DType::kFloat32, DType::kFloat32, GemmMath::kFloat32, false},
  };
  auto handle = CublasHandle::Create();
  if (!handle.ok()) {
    std::fprintf(stderr, "%s\n", handle.status().ToString().c_str());
    return 1;
  }
  std::printf("%-14s %6s %6s %6s %10s %10s %8s\n", "variant", "m", "n", "k", "median_ms", "TFLOP/s",
              "of_peak");
  for (absl::string_view size_text : absl::StrSplit(absl::GetFlag(FLAGS_sizes), ',')) {
    int64_t size = 0;
    if (!absl::SimpleAtoi(size_text, &size) || size <= 0) {
      std::fprintf(stderr, "--sizes: '%s' is not a positive integer\n",
                   std::string(size_text).c_str());
      return 1;
    }
    const GemmDims dims{size, size, size};
    // Random fp32 operands on the device, with bf16 copies; C large enough for fp32.
    auto a = DeviceBuffer<float>::FromHost(testing::RandomNormal(size * size, 1));
    auto b = DeviceBuffer<float>::FromHost(testing::RandomNormal(size * size, 2));
    auto a16 = DeviceBuffer<Bf16Bits>::Allocate(size * size);
    auto b16 = DeviceBuffer<Bf16Bits>::Allocate(size * size);
    auto c = DeviceBuffer<float>::Allocate(size * size);
    if (!a.ok() || !b.ok() || !a16.ok() || !b16.ok() || !c.ok() ||
        !CastFloatToBf16Cuda(a->data(), a16->data(), size * size).ok() ||
        !CastFloatToBf16Cuda(b->data(), b16->data(), size * size).ok()) {
      std::fprintf(stderr, "allocation or setup failed at size %ld\n", size);
      return 1;
    }
    for (const Variant& v : variants) {
      const bool bf16 = v.input == DType::kBFloat16;
      const void* pa = bf16 ? static_cast<const void*>(a16->data()) : a->data();
      const void* pb = bf16 ? static_cast<const void*>(b16->data()) : b->data();
      absl::StatusOr<double> ms = MedianMilliseconds(
          [&] {
            return GemmCuda(handle->get(), dims, v.input, v.output, 1.0f, pa, pb, 0.0f, c->data(),
                            v.math);
          },
          absl::GetFlag(FLAGS_warmup), absl::GetFlag(FLAGS_iters));
      if (!ms.ok()) {
        std::fprintf(stderr, "%s: %s\n", v.name, ms.status().ToString().c_str());
        return 1;
      }
      const double tflops = dims.Flops() / (*ms * 1e-3) / 1e12;
      const double peak = v.bf16_peak ? absl::GetFlag(FLAGS_peak_bf16_tflops)
                                      : absl::GetFlag(FLAGS_peak_fp32_tflops);
      std::printf("%-14s %6ld %6ld %6ld %10.3f %10.1f %7.0f%%\n", v.name, dims.m, dims.n, dims.k,
                  *ms, tflops, 100.0 * tflops / peak);
    }
  }
  return 0;
}

}  // namespace
}  // namespace maximus::kernels

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::kernels::Main();
}
