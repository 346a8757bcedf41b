// Element types of device tensors.

#ifndef MAXIMUS_KERNELS_DTYPE_H_
#define MAXIMUS_KERNELS_DTYPE_H_

#include <cstddef>

namespace maximus::kernels {

enum class DType { kFloat32, kBFloat16 };

inline const char* DTypeName(DType type) { return type == DType::kFloat32 ? "fp32" : "bf16"; }

inline size_t DTypeSize(DType type) { return type == DType::kFloat32 ? 4 : 2; }

}  // namespace maximus::kernels

#endif  // MAXIMUS_KERNELS_DTYPE_H_
