#include "tokenizer/end_of_text.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace maximus::tokenizer {

absl::StatusOr<int32_t> EndOfTextId(const Tokenizer& tokenizer) {
  static constexpr const char* kNames[] = {"<eos>", "<|end_of_text|>", "<|endoftext|>", "</s>"};
  for (const char* name : kNames) {
    const int32_t id = tokenizer.TokenToId(name);
    if (id >= 0) return id;
  }
  return absl::NotFoundError(absl::StrCat("the tokenizer has no end-of-text token (looked for ",
                                          absl::StrJoin(kNames, ", "), ")"));
}

}  // namespace maximus::tokenizer
