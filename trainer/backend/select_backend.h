// The backend a program runs on, chosen by name: "cpu", "cuda", or "auto"
// (the GPU when one is usable, else the CPU).

#ifndef MAXIMUS_TRAINER_BACKEND_SELECT_BACKEND_H_
#define MAXIMUS_TRAINER_BACKEND_SELECT_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "trainer/backend/backend.h"

namespace maximus::trainer {

inline constexpr char kBackendFlagHelp[] =
    "Backend: auto (the GPU when one is usable, else the CPU), cpu or cuda";

// The GPU backend's arithmetic comes from --gpu_precision (bf16, the
// default, or tf32), defined beside MakeBackend so that every program that
// chooses a backend takes it.
//
// INVALID_ARGUMENT naming --backend for an unknown name, or --gpu_precision
// for an unknown precision; UNAVAILABLE with the
// reason for "cuda" without a usable GPU. `description` (optional) receives
// a line saying what was chosen and why. The GPU backend runs on CUDA device
// `device` (CudaBackend::Options::device; a data-parallel rank's own). Both
// backends run every model, RandNLA attention included.
absl::StatusOr<std::unique_ptr<Backend>> MakeBackend(absl::string_view name,
                                                     std::string* description = nullptr,
                                                     int device = 0);

// OK for the names MakeBackend accepts.
absl::Status ValidateBackendName(absl::string_view name);

}  // namespace maximus::trainer

#endif  // MAXIMUS_TRAINER_BACKEND_SELECT_BACKEND_H_
