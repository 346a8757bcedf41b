// Normalizers of tokenizer.json: text -> text before pre-tokenization.

#ifndef MAXIMUS_TOKENIZER_NORMALIZER_H_
#define MAXIMUS_TOKENIZER_NORMALIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/regex.h"

namespace maximus::tokenizer {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // `text` is valid UTF-8; so is the result.
  virtual std::string Normalize(absl::string_view text) const = 0;
};

// Replaces every match of a literal or regex pattern.
class ReplaceNormalizer : public Normalizer {
 public:
  // `is_regex`: `pattern` is a regex, else a literal string.
  static absl::StatusOr<std::unique_ptr<ReplaceNormalizer>> Create(absl::string_view pattern,
                                                                   bool is_regex,
                                                                   std::string content);
  std::string Normalize(absl::string_view text) const override;

 private:
  ReplaceNormalizer() = default;
  std::string literal_;  // Used when regex_ is null.
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

class PrependNormalizer : public Normalizer {
 public:
  explicit PrependNormalizer(std::string prepend) : prepend_(std::move(prepend)) {}
  std::string Normalize(absl::string_view text) const override;

 private:
  std::string prepend_;
};

// Unicode normalisation forms through ICU.
class UnicodeNormalizer : public Normalizer {
 public:
  enum class Form { kNfc, kNfkc, kNfd, kNfkd };
  explicit UnicodeNormalizer(Form form) : form_(form) {}
  std::string Normalize(absl::string_view text) const override;

 private:
  Form form_;
};

// Full Unicode lowercasing (ICU, root locale), as JavaScript's toLowerCase.
class LowercaseNormalizer : public Normalizer {
 public:
  std::string Normalize(absl::string_view text) const override;
};

// Strips JavaScript white space from either end.
class StripNormalizer : public Normalizer {
 public:
  StripNormalizer(bool left, bool right) : left_(left), right_(right) {}
  std::string Normalize(absl::string_view text) const override;

 private:
  bool left_, right_;
};

class SequenceNormalizer : public Normalizer {
 public:
  explicit SequenceNormalizer(std::vector<std::unique_ptr<Normalizer>> normalizers)
      : normalizers_(std::move(normalizers)) {}
  std::string Normalize(absl::string_view text) const override;

 private:
  std::vector<std::unique_ptr<Normalizer>> normalizers_;
};

// Trims JavaScript white space; shared with added-token stripping.
absl::string_view TrimJsWhitespace(absl::string_view text, bool left, bool right);

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_NORMALIZER_H_
