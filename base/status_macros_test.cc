#include "base/status_macros.h"

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "gtest/gtest.h"

namespace maximus::base {
namespace {

absl::StatusOr<std::unique_ptr<std::string>> MakeText(bool ok, int* calls) {
  ++*calls;
  if (!ok) return absl::NotFoundError("no text");
  return std::make_unique<std::string>("text");
}

absl::StatusOr<size_t> TextLength(bool ok, int* calls) {
  MAXIMUS_ASSIGN_OR_RETURN(std::unique_ptr<std::string> text, MakeText(ok, calls));
  return text->size();
}

absl::Status Check(bool ok) {
  MAXIMUS_RETURN_IF_ERROR(ok ? absl::OkStatus() : absl::DataLossError("bad"));
  return absl::OkStatus();
}

TEST(StatusMacrosTest, AssignOrReturnMovesTheValueAndEvaluatesOnce) {
  int calls = 0;
  absl::StatusOr<size_t> length = TextLength(true, &calls);
  ASSERT_TRUE(length.ok());
  EXPECT_EQ(*length, 4u);
  EXPECT_EQ(calls, 1);
}

TEST(StatusMacrosTest, AssignOrReturnPassesTheErrorOn) {
  int calls = 0;
  absl::StatusOr<size_t> length = TextLength(false, &calls);
  EXPECT_EQ(length.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(length.status().message(), "no text");
  EXPECT_EQ(calls, 1);
}

TEST(StatusMacrosTest, ReturnIfError) {
  EXPECT_TRUE(Check(true).ok());
  EXPECT_EQ(Check(false).code(), absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace maximus::base
