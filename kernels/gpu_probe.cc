#include "kernels/gpu_probe.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "kernels/cuda_status.h"

namespace maximus::kernels {
namespace {

// The oldest architecture this build has machine code or PTX for (sm_90).
constexpr int kMinComputeCapabilityMajor = 9;

// Describes `device`, and makes it current with its context created when
// `use`; `count` devices are visible.
absl::StatusOr<GpuInfo> Describe(int device, int count, bool use) {
  if (device < 0 || device >= count) {
    const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
    return absl::InvalidArgumentError(absl::StrFormat(
        "CUDA device %d does not exist: %d device%s visible%s", device, count,
        count == 1 ? " is" : "s are",
        visible != nullptr ? absl::StrCat(" (CUDA_VISIBLE_DEVICES=", visible, ")") : ""));
  }
  GpuInfo info;
  info.device = device;
  cudaDeviceProp props;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&props, info.device));
  info.name = props.name;
  info.compute_capability_major = props.major;
  info.compute_capability_minor = props.minor;
  info.multiprocessors = props.multiProcessorCount;
  info.global_memory_bytes = static_cast<int64_t>(props.totalGlobalMem);
  info.l2_cache_bytes = props.l2CacheSize;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaDriverGetVersion(&info.driver_version));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaRuntimeGetVersion(&info.runtime_version));
  if (info.compute_capability_major < kMinComputeCapabilityMajor) {
    return absl::UnavailableError(absl::StrFormat(
        "%s has compute capability %d.%d; Maximus's kernels need %d.0 or newer", info.name,
        info.compute_capability_major, info.compute_capability_minor, kMinComputeCapabilityMajor));
  }
  if (!use) return info;
  // A context is created here, so later timings do not include it.
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaSetDevice(info.device));
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaFree(nullptr));
  return info;
}

absl::StatusOr<GpuInfo> ProbeOnce() {
  const char* disabled = std::getenv("MAXIMUS_DISABLE_GPU");
  if (disabled != nullptr && std::strcmp(disabled, "1") == 0) {
    return absl::UnavailableError("GPU disabled by MAXIMUS_DISABLE_GPU=1");
  }
  int count = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  if (count == 0) return absl::UnavailableError("no CUDA device found");
  // No context: a rank of a multi-GPU run must not leave one on device 0.
  return Describe(0, count, /*use=*/false);
}

}  // namespace

std::string GpuInfo::ToString() const {
  return absl::StrFormat("%s (sm_%d%d, %d SMs, %.1f GiB, L2 %.0f MiB, driver %d.%d, runtime %d.%d)",
                         name, compute_capability_major, compute_capability_minor, multiprocessors,
                         global_memory_bytes / double(1 << 30), l2_cache_bytes / double(1 << 20),
                         driver_version / 1000, driver_version % 1000 / 10, runtime_version / 1000,
                         runtime_version % 1000 / 10);
}

absl::StatusOr<GpuInfo> ProbeGpu() {
  static const absl::StatusOr<GpuInfo>* const kResult = new absl::StatusOr<GpuInfo>(ProbeOnce());
  return *kResult;
}

absl::StatusOr<GpuInfo> UseGpu(int device) {
  int count = 0;
  MAXIMUS_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&count));
  return Describe(device, count, /*use=*/true);
}

}  // namespace maximus::kernels
