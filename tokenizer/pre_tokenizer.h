// Pre-tokenizers of tokenizer.json: split normalized text into the pieces
// (words) that the model encodes independently.

#ifndef MAXIMUS_TOKENIZER_PRE_TOKENIZER_H_
#define MAXIMUS_TOKENIZER_PRE_TOKENIZER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/regex.h"

namespace maximus::tokenizer {

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Replaces `pieces` by their pre-tokenization. `first_section`: the text is
  // the start of the input (Metaspace's prepend_scheme "first").
  virtual void PreTokenize(std::vector<std::string>* pieces, bool first_section) const;

 protected:
  // Pre-tokenizes one piece, appending results to `out`.
  virtual void Split(std::string&& piece, bool first_section,
                     std::vector<std::string>* out) const = 0;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

absl::StatusOr<SplitBehavior> ParseSplitBehavior(absl::string_view name);

// Splits on a literal or regex pattern (`invert`: the pattern describes the
// pieces, not the delimiters).
class SplitPreTokenizer : public PreTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<SplitPreTokenizer>> Create(absl::string_view pattern,
                                                                   bool is_regex,
                                                                   SplitBehavior behavior,
                                                                   bool invert);

 protected:
  void Split(std::string&& piece, bool first_section, std::vector<std::string>* out) const override;

 private:
  SplitPreTokenizer() = default;
  std::unique_ptr<Regex> regex_;
  SplitBehavior behavior_ = SplitBehavior::kIsolated;
  bool invert_ = false;
};

// Applies `behavior` to the matches of a pattern in `text`; exposed for the
// pre-tokenizers that are defined by a fixed pattern.
void SplitByMatches(absl::string_view text, const std::vector<std::pair<size_t, size_t>>& matches,
                    SplitBehavior behavior, bool invert, std::vector<std::string>* out);

// SentencePiece-style: spaces become `replacement`, optionally prepended.
class MetaspacePreTokenizer : public PreTokenizer {
 public:
  enum class PrependScheme { kAlways, kFirst, kNever };
  MetaspacePreTokenizer(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)), scheme_(scheme), split_(split) {}

 protected:
  void Split(std::string&& piece, bool first_section, std::vector<std::string>* out) const override;

 private:
  std::string replacement_;
  PrependScheme scheme_;
  bool split_;
};

// GPT-2 byte-level: optional regex split, then every byte as a printable code point.
class ByteLevelPreTokenizer : public PreTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<ByteLevelPreTokenizer>> Create(bool add_prefix_space,
                                                                       bool use_regex);

 protected:
  void Split(std::string&& piece, bool first_section, std::vector<std::string>* out) const override;

 private:
  ByteLevelPreTokenizer() = default;
  bool add_prefix_space_ = false;
  std::unique_ptr<Regex> regex_;  // Null when use_regex is false.
};

// Keeps the matches of a fixed pattern (Digits, Whitespace, WhitespaceSplit).
class PatternPreTokenizer : public PreTokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> Digits(bool individual_digits);
  static absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> Whitespace();
  static absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> WhitespaceSplit();

 protected:
  void Split(std::string&& piece, bool first_section, std::vector<std::string>* out) const override;

 private:
  static absl::StatusOr<std::unique_ptr<PatternPreTokenizer>> Make(absl::string_view pattern);
  PatternPreTokenizer() = default;
  std::unique_ptr<Regex> regex_;
};

class SequencePreTokenizer : public PreTokenizer {
 public:
  explicit SequencePreTokenizer(std::vector<std::unique_ptr<PreTokenizer>> steps)
      : steps_(std::move(steps)) {}
  void PreTokenize(std::vector<std::string>* pieces, bool first_section) const override;

 protected:
  void Split(std::string&& piece, bool first_section, std::vector<std::string>* out) const override;

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_PRE_TOKENIZER_H_
