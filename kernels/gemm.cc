#include "kernels/gemm.h"

#include <cblas.h>

#include <limits>

#include "absl/strings/str_cat.h"

namespace maximus::kernels {

absl::Status ValidateGemmDims(const GemmDims& dims) {
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  const struct {
    const char* name;
    int64_t value;
  } fields[] = {{"m", dims.m}, {"n", dims.n}, {"k", dims.k}};
  for (const auto& field : fields) {
    if (field.value <= 0 || field.value > kMax) {
      return absl::InvalidArgumentError(
          absl::StrCat("GemmDims.", field.name, " must be in [1, ", kMax, "], got ", field.value));
    }
  }
  return absl::OkStatus();
}

absl::Status Gemm(const GemmDims& dims, float alpha, const float* a, const float* b, float beta,
                  float* c) {
  if (absl::Status status = ValidateGemmDims(dims); !status.ok()) return status;
  if (a == nullptr || b == nullptr || c == nullptr) {
    return absl::InvalidArgumentError("Gemm: a, b and c must be non-null");
  }
  const int lda = static_cast<int>(dims.transpose_a ? dims.m : dims.k);
  const int ldb = static_cast<int>(dims.transpose_b ? dims.k : dims.n);
  cblas_sgemm(CblasRowMajor, dims.transpose_a ? CblasTrans : CblasNoTrans,
              dims.transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(dims.m),
              static_cast<int>(dims.n), static_cast<int>(dims.k), alpha, a, lda, b, ldb, beta, c,
              static_cast<int>(dims.n));
  return absl::OkStatus();
}

}  // namespace maximus::kernels
