// The CUDA backend against the conformance suite. The bound covers the
// GEMMs' tf32 rounding (about 1e-3 relative) and the losses' bf16 inputs
// (hidden states and embedding rounded to 8 significant bits: about 4e-3
// relative on a logit, more on a gradient that sums many of them).

#include <memory>
#include <string>

#include "kernels/gpu_probe.h"
#include "kernels/gpu_test_util.h"
#include "trainer/backend/conformance_suite.h"
#include "trainer/backend/cuda/cuda_backend.h"

namespace maximus::trainer {
namespace {

std::string WhyUnavailable() {
  const auto gpu = kernels::ProbeGpu();
  if (gpu.ok() || GpuRequiredByEnvironment()) return "";
  return std::string("no usable GPU: ") + std::string(gpu.status().message());
}

std::unique_ptr<Backend> MakeCudaBackend() {
  auto backend = CudaBackend::Create();
  if (!backend.ok()) {
    ADD_FAILURE() << backend.status();
    return nullptr;
  }
  return *std::move(backend);
}

INSTANTIATE_TEST_SUITE_P(Cuda, BackendConformanceTest,
                         ::testing::Values(BackendUnderTest{"cuda", MakeCudaBackend, 2e-2,
                                                            WhyUnavailable}),
                         BackendUnderTestName);

}  // namespace
}  // namespace maximus::trainer
