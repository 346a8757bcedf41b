// Early return on a failed absl::Status.

#ifndef MAXIMUS_KERNELS_STATUS_MACROS_H_
#define MAXIMUS_KERNELS_STATUS_MACROS_H_

#include "absl/status/status.h"

#define MAXIMUS_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    const absl::Status maximus_status_ = (expr);       \
    if (!maximus_status_.ok()) return maximus_status_; \
  } while (0)

#endif  // MAXIMUS_KERNELS_STATUS_MACROS_H_
