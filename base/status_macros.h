// Early returns on a failed absl::Status or absl::StatusOr.
//
//   MAXIMUS_RETURN_IF_ERROR(WriteFile(path));
//   MAXIMUS_ASSIGN_OR_RETURN(Tokenizer tokenizer, Tokenizer::Load(path));
//   MAXIMUS_ASSIGN_OR_RETURN(auto model, Model::Create(backend, config));

#ifndef MAXIMUS_BASE_STATUS_MACROS_H_
#define MAXIMUS_BASE_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define MAXIMUS_RETURN_IF_ERROR(expr)                  \
  do {                                                 \
    const absl::Status maximus_status_ = (expr);       \
    if (!maximus_status_.ok()) return maximus_status_; \
  } while (0)

// Evaluates `rexpr` (an absl::StatusOr<T>) once; returns its status when it
// failed, else moves its value into `lhs` (a declaration or an lvalue).
#define MAXIMUS_ASSIGN_OR_RETURN(lhs, rexpr) \
  MAXIMUS_ASSIGN_OR_RETURN_IMPL_(MAXIMUS_STATUS_CONCAT_(maximus_statusor_, __LINE__), lhs, rexpr)

#define MAXIMUS_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                   \
  if (!statusor.ok()) return std::move(statusor).status();   \
  lhs = *std::move(statusor)

#define MAXIMUS_STATUS_CONCAT_INNER_(a, b) a##b
#define MAXIMUS_STATUS_CONCAT_(a, b) MAXIMUS_STATUS_CONCAT_INNER_(a, b)

#endif  // MAXIMUS_BASE_STATUS_MACROS_H_
