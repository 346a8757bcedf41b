#include "trainer/backend/select_backend.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "kernels/gpu_probe.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/backend/cuda/cuda_backend.h"

namespace maximus::trainer {

absl::Status ValidateBackendName(absl::string_view name) {
  if (name == "auto" || name == "cpu" || name == "cuda") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--backend=", name, ": expected auto, cpu or cuda"));
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     std::string* description) {
  if (absl::Status s = ValidateBackendName(name); !s.ok()) return s;
  std::string ignored;
  std::string& said = description != nullptr ? *description : ignored;
  if (name == "cpu") {
    said = "backend: cpu";
    return std::make_unique<CpuBackend>();
  }
  const absl::StatusOr<kernels::GpuInfo> gpu = kernels::ProbeGpu();
  if (!gpu.ok()) {
    if (name == "cuda") {
      return absl::UnavailableError(
          absl::StrCat("--backend=cuda: no usable GPU: ", gpu.status().message()));
    }
    said = absl::StrCat("backend: cpu (no usable GPU: ", gpu.status().message(), ")");
    return std::make_unique<CpuBackend>();
  }
  absl::StatusOr<std::unique_ptr<CudaBackend>> cuda = CudaBackend::Create();
  if (!cuda.ok()) {
    if (name == "cuda") return cuda.status();
    said =
        absl::StrCat("backend: cpu (the GPU could not be set up: ", cuda.status().message(), ")");
    return std::make_unique<CpuBackend>();
  }
  said = absl::StrCat("backend: cuda on ", (*cuda)->device_description());
  return std::unique_ptr<Backend>(*std::move(cuda));
}

}  // namespace maximus::trainer
