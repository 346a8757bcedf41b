// Test helpers for GPU code: skip with the reason where no GPU is usable.

#ifndef MAXIMUS_KERNELS_GPU_TEST_UTIL_H_
#define MAXIMUS_KERNELS_GPU_TEST_UTIL_H_

#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "kernels/gpu_probe.h"

// True when MAXIMUS_REQUIRE_GPU=1: on a GPU machine a missing GPU is then a
// failure, not a skip.
inline bool GpuRequiredByEnvironment() {
  const char* required = std::getenv("MAXIMUS_REQUIRE_GPU");
  return required != nullptr && std::strcmp(required, "1") == 0;
}

// Skips the current test unless a usable GPU is present (fails instead under
// MAXIMUS_REQUIRE_GPU=1).
#define MAXIMUS_SKIP_WITHOUT_GPU()                                          \
  do {                                                                      \
    const auto maximus_gpu_ = ::maximus::kernels::ProbeGpu();               \
    if (!maximus_gpu_.ok()) {                                               \
      if (GpuRequiredByEnvironment()) {                                     \
        GTEST_FAIL() << "MAXIMUS_REQUIRE_GPU=1 but no usable GPU: "         \
                     << maximus_gpu_.status().message();                    \
      }                                                                     \
      GTEST_SKIP() << "no usable GPU: " << maximus_gpu_.status().message(); \
    }                                                                       \
  } while (0)

#endif  // MAXIMUS_KERNELS_GPU_TEST_UTIL_H_
