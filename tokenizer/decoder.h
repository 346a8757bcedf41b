// Decoders of tokenizer.json: token strings -> text.

#ifndef MAXIMUS_TOKENIZER_DECODER_H_
#define MAXIMUS_TOKENIZER_DECODER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "tokenizer/regex.h"

namespace maximus::tokenizer {

// One token of the sequence being decoded: its string and whether it is an
// added token (which byte-level decoding passes through unchanged).
struct DecodeToken {
  std::string text;
  bool added = false;
};

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the token list (a step of a decoder chain).
  virtual void DecodeChain(std::vector<DecodeToken>* tokens) const = 0;
};

class ReplaceDecoder : public Decoder {
 public:
  static absl::StatusOr<std::unique_ptr<ReplaceDecoder>> Create(absl::string_view pattern,
                                                                bool is_regex, std::string content);
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;

 private:
  ReplaceDecoder() = default;
  std::unique_ptr<Regex> regex_;
  std::string content_;
};

// Runs of <0xXX> tokens become the text of their bytes (U+FFFD for each
// maximal ill-formed subsequence).
class ByteFallbackDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;
};

// Joins all tokens into one.
class FuseDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;
};

// Removes up to `start` leading and `stop` trailing copies of `content`.
class StripDecoder : public Decoder {
 public:
  StripDecoder(std::string content, int start, int stop)
      : content_(std::move(content)), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;

 private:
  std::string content_;
  int start_, stop_;
};

// `replacement` back to spaces; the first token loses a leading space unless
// the prepend scheme is "never".
class MetaspaceDecoder : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool strip_first)
      : replacement_(std::move(replacement)), strip_first_(strip_first) {}
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;

 private:
  std::string replacement_;
  bool strip_first_;
};

// Byte-level code points back to bytes; runs between added tokens are decoded
// together (U+FFFD for ill-formed UTF-8).
class ByteLevelDecoder : public Decoder {
 public:
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;
};

class SequenceDecoder : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> steps)
      : steps_(std::move(steps)) {}
  void DecodeChain(std::vector<DecodeToken>* tokens) const override;

 private:
  std::vector<std::unique_ptr<Decoder>> steps_;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_DECODER_H_
