// Finds out once whether a CUDA GPU is usable by this process. Every GPU test
// and benchmark asks here first, so that on a machine without a GPU they skip
// with the reason instead of failing, and run for real where there is one.

#ifndef MAXIMUS_KERNELS_GPU_PROBE_H_
#define MAXIMUS_KERNELS_GPU_PROBE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"

namespace maximus::kernels {

struct GpuInfo {
  int device = 0;
  std::string name;
  int compute_capability_major = 0;
  int compute_capability_minor = 0;
  int multiprocessors = 0;
  int64_t global_memory_bytes = 0;
  int64_t l2_cache_bytes = 0;
  int driver_version = 0;   // e.g. 13000 for CUDA 13.0.
  int runtime_version = 0;  // The runtime this binary was linked with.

  std::string ToString() const;
};

// Probes device 0 (creating no context) on the first call and caches the
// answer. UNAVAILABLE with the reason when no GPU can be used: no driver, no
// device, a device older than the sm_90 code this build contains, or
// MAXIMUS_DISABLE_GPU=1 set in the environment.
absl::StatusOr<GpuInfo> ProbeGpu();

// Makes device `device` the calling thread's current one (its context
// created) and describes it, for a process that drives one of several GPUs.
// ProbeGpu() creates no context, so only this device gets one (each rank of
// a multi-GPU run would otherwise hold one on device 0). INVALID_ARGUMENT
// naming how many devices are visible when there is no such device;
// UNAVAILABLE for one older than sm_90.
absl::StatusOr<GpuInfo> UseGpu(int device);

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_GPU_PROBE_H_
