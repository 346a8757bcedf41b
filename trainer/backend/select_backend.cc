#include "trainer/backend/select_backend.h"

#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "kernels/gpu_probe.h"
#include "trainer/backend/cpu/cpu_backend.h"
#include "trainer/backend/cuda/cuda_backend.h"

ABSL_FLAG(std::string, gpu_precision, "bf16",
          "On the GPU backend: bf16 (GEMMs and attention on bf16 tensor cores, fp32 weights, "
          "activations and accumulation) or tf32 (tf32 GEMMs and attention tiles: about 3x "
          "closer to the CPU's numbers, 1.7x slower)");

namespace maximus::trainer {

absl::StatusOr<CudaBackend::Options> CudaOptionsFromFlags() {
  const std::string precision = absl::GetFlag(FLAGS_gpu_precision);
  CudaBackend::Options options;
  if (precision == "bf16") {
    options.gemm_precision = CudaBackend::GemmPrecision::kBf16;
    options.bf16_attention = true;
  } else if (precision == "tf32") {
    options.gemm_precision = CudaBackend::GemmPrecision::kTf32;
    options.bf16_attention = false;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu_precision=", precision, ": expected bf16 or tf32"));
  }
  return options;
}

absl::Status ValidateBackendName(absl::string_view name) {
  if (name == "auto" || name == "cpu" || name == "cuda") return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("--backend=", name, ": expected auto, cpu or cuda"));
}

absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     std::string* description, int device) {
  if (absl::Status s = ValidateBackendName(name); !s.ok()) return s;
  absl::StatusOr<CudaBackend::Options> cuda_options = CudaOptionsFromFlags();
  if (!cuda_options.ok()) return cuda_options.status();
  cuda_options->device = device;
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
  absl::StatusOr<std::unique_ptr<CudaBackend>> cuda = CudaBackend::Create(*cuda_options);
  if (!cuda.ok()) {
    if (name == "cuda") return cuda.status();
    said =
        absl::StrCat("backend: cpu (the GPU could not be set up: ", cuda.status().message(), ")");
    return std::make_unique<CpuBackend>();
  }
  said = absl::StrCat("backend: cuda (", absl::GetFlag(FLAGS_gpu_precision), ") on ",
                      device != 0 ? absl::StrCat("device ", device, ", ") : "",
                      (*cuda)->device_description());
  return std::unique_ptr<Backend>(*std::move(cuda));
}

}  // namespace maximus::trainer
