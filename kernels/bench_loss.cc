// Forward + backward of the losses at 262k vocabulary on the GPU: MAXIS and
// the exact linear cross-entropy, with the three N x V x d GEMMs of the exact
// loss timed alone as its floor. Reports median milliseconds, the device
// memory each holds besides inputs and outputs, and rates against measured
// ceilings. kernels/bench/bench_loss_torch.py runs PyTorch on the same shapes.
//
//   bazel run //kernels:bench_loss -- --shapes=4088x2048x262144,16384x640x262144

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "base/status_macros.h"
#include "kernels/bench_timer.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/cublas_handle.h"
#include "kernels/device_buffer.h"
#include "kernels/gemm_cuda.h"
#include "kernels/gpu_probe.h"
#include "kernels/maxis_cuda.h"
#include "kernels/random_cuda.h"

ABSL_FLAG(std::string, shapes, "4088x2048x262144,16384x640x262144",
          "Comma-separated NxDxV shapes (tokens x hidden x vocabulary).");
ABSL_FLAG(std::string, losses, "maxis,ce", "Which losses to run: maxis, ce or both.");
ABSL_FLAG(int64_t, chunk_tokens, 2048, "Rows of logits the exact CE holds at once.");
ABSL_FLAG(int64_t, candidate_budget, 2048, "MAXIS K.");
ABSL_FLAG(int, warmup, 3, "Untimed runs.");
ABSL_FLAG(int, iters, 20, "Timed runs (median reported).");
ABSL_FLAG(double, peak_tflops, 790.0, "Measured bf16 GEMM ceiling, TFLOP/s.");
ABSL_FLAG(double, peak_gbps, 4300.0, "Measured device copy ceiling, GB/s (read + write).");

namespace maximus::kernels {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

int64_t FreeBytes() {
  size_t free = 0, total = 0;
  cudaMemGetInfo(&free, &total);
  return static_cast<int64_t>(free);
}

void Fail(const absl::Status& status, const char* what) {
  std::fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
  std::exit(1);
}

template <typename T>
T Check(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) Fail(value.status(), what);
  return *std::move(value);
}

void Row(const char* name, const LinearHeadShape& s, double ms, double extra_bytes, double flops,
         double bytes) {
  const double peak_ms = std::max(flops / (absl::GetFlag(FLAGS_peak_tflops) * 1e12),
                                  bytes / (absl::GetFlag(FLAGS_peak_gbps) * 1e9)) *
                         1e3;
  std::printf("%-22s %6ld %5ld %7ld %9.3f %9.2f %8.1f %8.0f %9.3f %6.2fx\n", name, s.tokens,
              s.hidden, s.vocab, ms, extra_bytes / kGiB, flops / (ms * 1e-3) / 1e12,
              bytes / (ms * 1e-3) / 1e9, peak_ms, ms / peak_ms);
}

void RunShape(const LinearHeadShape& s) {
  const int warmup = absl::GetFlag(FLAGS_warmup), iters = absl::GetFlag(FLAGS_iters);
  const int64_t n = s.tokens, d = s.hidden, v = s.vocab;
  auto hidden = Check(DeviceBuffer<Bf16Bits>::Allocate(n * d), "hidden");
  auto weight = Check(DeviceBuffer<Bf16Bits>::Allocate(v * d), "weight");
  if (!FillNormalCuda(hidden.data(), n * d, 1, 1.0f).ok() ||
      !FillNormalCuda(weight.data(), v * d, 2, 0.02f).ok()) {
    Fail(absl::InternalError("fill"), "random inputs");
  }
  std::vector<int32_t> host_targets(n);
  std::mt19937 rng(3);
  for (int32_t& t : host_targets) t = static_cast<int32_t>(rng() % v);
  auto targets = Check(DeviceBuffer<int32_t>::FromHost(host_targets), "targets");
  const LinearHeadDeviceInputs inputs{hidden.data(), weight.data(), targets.data(), nullptr};
  auto grad_hidden = Check(DeviceBuffer<float>::Allocate(n * d), "grad_hidden");
  auto loss = Check(DeviceBuffer<float>::Allocate(3), "loss");

  const std::string losses = absl::GetFlag(FLAGS_losses);
  if (losses.find("maxis") != std::string::npos) {  // MAXIS.
    MaxisConfig config;
    config.candidate_budget = absl::GetFlag(FLAGS_candidate_budget);
    const int64_t free_before = FreeBytes();
    auto maxis = Check(MaxisCuda::Create(s, config), "MaxisCuda::Create");
    auto ids = Check(DeviceBuffer<int32_t>::Allocate(maxis.max_grad_rows()), "ids");
    auto rows = Check(DeviceBuffer<float>::Allocate(maxis.max_grad_rows() * d), "rows");
    const int64_t output_bytes = ids.bytes() + rows.bytes();
    MaxisCuda::Counts counts;
    const double ms = Check(MedianMilliseconds(
                                [&]() -> absl::Status {
                                  MAXIMUS_ASSIGN_OR_RETURN(
                                      counts, maxis.Run(inputs, {loss.data(), grad_hidden.data(),
                                                                 ids.data(), rows.data()}));
                                  return absl::OkStatus();
                                },
                                warmup, iters),
                            "MAXIS");
    const double extra = static_cast<double>(free_before - FreeBytes() - output_bytes);
    const double c = static_cast<double>(counts.candidates);
    const double scouts = static_cast<double>(maxis.scouts());
    // Scout scan, candidate logits (full + low), two backward GEMMs each.
    const double flops =
        2.0 * scouts * v * config.low_dim + 3 * 2.0 * n * c * d + 3 * 2.0 * n * c * config.low_dim;
    // W once for the norms, its first d_low columns for the scan, H a few times.
    const double bytes = 2.0 * v * d + 2.0 * v * config.low_dim + 4 * 2.0 * n * d + 4.0 * n * d +
                         4.0 * counts.grad_rows * d;
    Row("maxis", s, ms, extra, flops, bytes);
    std::printf("  |C| = %ld, dW rows = %ld, workspace %.3f GiB\n", counts.candidates,
                counts.grad_rows, maxis.workspace_bytes() / kGiB);
  }
  if (losses.find("ce") != std::string::npos) {  // Exact cross-entropy, and its GEMMs alone.
    auto grad_weight = Check(DeviceBuffer<float>::Allocate(v * d), "grad_weight");
    const int64_t free_before = FreeBytes();
    auto ce =
        Check(LinearCrossEntropyCuda::Create(s, {absl::GetFlag(FLAGS_chunk_tokens)}), "CE Create");
    const CrossEntropyDeviceOutputs outputs{loss.data(), nullptr, grad_hidden.data(),
                                            grad_weight.data()};
    const double ms =
        Check(MedianMilliseconds([&] { return ce.Run(inputs, outputs); }, warmup, iters), "CE");
    const double extra = static_cast<double>(free_before - FreeBytes());
    const double flops = 3 * 2.0 * n * v * d;
    // Inputs, dense fp32 dW, and the chunk logits: written, read twice, bf16 gradient
    // written and read by two GEMMs.
    const double bytes =
        2.0 * v * d + 2.0 * n * d + 4.0 * v * d + 4.0 * n * d + n * v * (4.0 + 8.0 + 2.0 + 4.0);
    Row("exact_ce", s, ms, extra, flops, bytes);

    const int64_t chunk = std::min(absl::GetFlag(FLAGS_chunk_tokens), n);
    auto handle = Check(CublasHandle::Create(), "cublas");
    auto logits = Check(DeviceBuffer<Bf16Bits>::Allocate(chunk * v * 2), "logits");
    const double gemm_ms = Check(
        MedianMilliseconds(
            [&]() -> absl::Status {
              for (int64_t r0 = 0; r0 < n; r0 += chunk) {
                const int64_t rows = std::min(chunk, n - r0);
                MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle.get(), GemmDims{rows, v, d, false, true},
                                                 DType::kBFloat16, DType::kFloat32, 1.0f,
                                                 hidden.data() + r0 * d, weight.data(), 0.0f,
                                                 logits.data()));
                MAXIMUS_RETURN_IF_ERROR(GemmCuda(
                    handle.get(), GemmDims{rows, d, v}, DType::kBFloat16, DType::kFloat32, 1.0f,
                    logits.data(), weight.data(), 0.0f, grad_hidden.data() + r0 * d));
                MAXIMUS_RETURN_IF_ERROR(GemmCuda(handle.get(), GemmDims{v, d, rows, true, false},
                                                 DType::kBFloat16, DType::kFloat32, 1.0f,
                                                 logits.data(), hidden.data() + r0 * d,
                                                 r0 == 0 ? 0.0f : 1.0f, grad_weight.data()));
              }
              return absl::OkStatus();
            },
            warmup, iters),
        "GEMMs");
    Row("ce_gemms_only", s, gemm_ms, 0.0, flops, 2.0 * v * d + 2.0 * n * d + 8.0 * v * d);
    std::printf(
        "  exact CE / its GEMMs = %.2fx; CE workspace %.3f GiB (+ dense fp32 dW %.3f GiB)\n",
        ms / gemm_ms, ce.workspace_bytes() / kGiB, grad_weight.bytes() / kGiB);
  }
}

int Main() {
  const absl::StatusOr<GpuInfo> gpu = ProbeGpu();
  if (!gpu.ok()) {
    std::fprintf(stderr, "bench_loss needs a GPU: %s\n",
                 std::string(gpu.status().message()).c_str());
    return 1;
  }
  std::printf("GPU: %s\n", gpu->ToString().c_str());
  std::printf("%-22s %6s %5s %7s %9s %9s %8s %8s %9s %7s\n", "loss (fwd+bwd)", "N", "d", "V",
              "median_ms", "extra_GiB", "TFLOP/s", "GB/s", "floor_ms", "/floor");
  for (absl::string_view text : absl::StrSplit(absl::GetFlag(FLAGS_shapes), ',')) {
    std::vector<std::string> parts = absl::StrSplit(text, 'x');
    LinearHeadShape shape;
    if (parts.size() != 3 || !absl::SimpleAtoi(parts[0], &shape.tokens) ||
        !absl::SimpleAtoi(parts[1], &shape.hidden) || !absl::SimpleAtoi(parts[2], &shape.vocab)) {
      std::fprintf(stderr, "--shapes: '%s' is not NxDxV\n", std::string(text).c_str());
      return 1;
    }
    RunShape(shape);
  }
  return 0;
}

}  // namespace
}  // namespace maximus::kernels

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return maximus::kernels::Main();
}
