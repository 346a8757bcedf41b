// A compiled PCRE2 pattern (UTF, Unicode properties, JIT) with the
// match-all and replace-all operations the tokenizer needs.

#ifndef MAXIMUS_TOKENIZER_REGEX_H_
#define MAXIMUS_TOKENIZER_REGEX_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

class Regex {
 public:
  // Compiles a pattern written for the reference tokenizer (JavaScript /u
  // semantics): \s, \S, \d, \D are rewritten to their ECMAScript meaning and
  // the known Python-only constructs to their JavaScript equivalents, so that
  // both engines split text identically.
  static absl::StatusOr<std::unique_ptr<Regex>> Compile(absl::string_view pattern);

  // A pattern that matches `literal` exactly.
  static absl::StatusOr<std::unique_ptr<Regex>> Literal(absl::string_view literal);

  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Non-empty, non-overlapping matches in `text` (valid UTF-8), left to right,
  // as [begin, end) byte offsets.
  void FindAll(absl::string_view text, std::vector<std::pair<size_t, size_t>>* matches) const;

  std::string ReplaceAll(absl::string_view text, absl::string_view replacement) const;

  const std::string& pattern() const { return pattern_; }

  // The rewrite Compile applies, exposed for tests.
  static std::string ToPcre2(absl::string_view js_pattern);

 private:
  Regex(std::string pattern, void* code) : pattern_(std::move(pattern)), code_(code) {}
  static absl::StatusOr<std::unique_ptr<Regex>> CompilePcre2(absl::string_view source,
                                                             const std::string& pcre);

  std::string pattern_;
  void* code_;  // pcre2_code_8*
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_REGEX_H_
