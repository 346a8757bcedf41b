// Test helpers for GPU code: skip with the reason where no GPU is usable.

#ifndef MAXIMUS_KERNELS_GPU_TEST_UTIL_H_
#define MAXIMUS_KERNELS_GPU_TEST_UTIL_H_

#include "gtest/gtest.h"
#include "kernels/gpu_probe.h"

// Skips the current test unless a usable GPU is present.
#define MAXIMUS_SKIP_WITHOUT_GPU()                                       \
  do {                                                                   \
    const auto maximus_gpu_ = ::maximus::kernels::ProbeGpu();            \
    if (!maximus_gpu_.ok()) {                                            \
      GTEST_SKIP() << "no usable GPU: " << maximus_gpu_.status().message(); \
    }                                                                    \
  } while (0)

#endif  // MAXIMUS_KERNELS_GPU_TEST_UTIL_H_
