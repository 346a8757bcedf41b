#include "kernels/gemm.h"

#include <cblas.h>

#include <limits>

#include "absl/strings/str_cat.h"
#include "base/status_macros.h"

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
  const struct {
    const char* name;
    int64_t value, row_length;
  } leading[] = {{"lda", dims.LeadingA(), dims.transpose_a ? dims.m : dims.k},
                 {"ldb", dims.LeadingB(), dims.transpose_b ? dims.k : dims.n},
                 {"ldc", dims.LeadingC(), dims.n}};
  for (const auto& field : leading) {
    if (field.value < field.row_length || field.value > kMax) {
      return absl::InvalidArgumentError(absl::StrCat("GemmDims.", field.name, " must be in [",
                                                     field.row_length, ", ", kMax, "], got ",
                                                     field.value));
    }
  }
  return absl::OkStatus();
}

absl::Status Gemm(const GemmDims& dims, float alpha, const float* a, const float* b, float beta,
                  float* c) {
  MAXIMUS_RETURN_IF_ERROR(ValidateGemmDims(dims));
  if (a == nullptr || b == nullptr || c == nullptr) {
    return absl::InvalidArgumentError("Gemm: a, b and c must be non-null");
  }
  cblas_sgemm(CblasRowMajor, dims.transpose_a ? CblasTrans : CblasNoTrans,
              dims.transpose_b ? CblasTrans : CblasNoTrans, static_cast<int>(dims.m),
              static_cast<int>(dims.n), static_cast<int>(dims.k), alpha, a,
              static_cast<int>(dims.LeadingA()), b, static_cast<int>(dims.LeadingB()), beta, c,
              static_cast<int>(dims.LeadingC()));
  return absl::OkStatus();
}

}  // namespace maximus::kernels
