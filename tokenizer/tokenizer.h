// A Hugging Face tokenizer.json pipeline: added tokens, normalizer,
// pre-tokenizer, BPE model, post-processor and decoder. Immutable after
// loading and safe to use from many threads.

#ifndef MAXIMUS_TOKENIZER_TOKENIZER_H_
#define MAXIMUS_TOKENIZER_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "tokenizer/added_vocabulary.h"
#include "tokenizer/bpe_model.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/post_processor.h"
#include "tokenizer/pre_tokenizer.h"

namespace maximus::tokenizer {

struct EncodeOptions {
  // Apply the post-processor's template (e.g. Gemma's <bos>).
  bool add_special_tokens = false;
  // Reject ill-formed UTF-8 instead of replacing each maximal ill-formed
  // subsequence with U+FFFD (what the reference does with such bytes).
  bool strict_utf8 = false;
};

struct DecodeOptions {
  bool skip_special_tokens = false;
};

class Tokenizer {
 public:
  // The parts of a tokenizer.json; any may be null except the model.
  struct Components {
    std::unique_ptr<Normalizer> normalizer;
    std::unique_ptr<PreTokenizer> pre_tokenizer;
    std::unique_ptr<BpeModel> model;
    std::unique_ptr<PostProcessor> post_processor;
    std::unique_ptr<Decoder> decoder;
    std::vector<AddedToken> added_tokens;
  };

  // Parses tokenizer.json text; unsupported components fail with a message
  // naming them.
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromJson(absl::string_view json);
  static absl::StatusOr<std::unique_ptr<Tokenizer>> FromFile(const std::string& path);
  static std::unique_ptr<Tokenizer> FromComponents(Components components, std::string fingerprint);

  absl::StatusOr<std::vector<int32_t>> Encode(absl::string_view text,
                                              const EncodeOptions& options = {}) const;
  // Encodes texts on `threads` workers of the shared pool (0: one per core);
  // results in input order.
  absl::StatusOr<std::vector<std::vector<int32_t>>> EncodeBatch(absl::Span<const std::string> texts,
                                                                const EncodeOptions& options = {},
                                                                int threads = 0) const;
  // Fails with INVALID_ARGUMENT naming the first id outside the vocabulary.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     const DecodeOptions& options = {}) const;

  // One more than the largest id of the model or an added token.
  int32_t vocab_size() const { return vocab_size_; }
  const std::vector<AddedToken>& added_tokens() const { return added_.tokens(); }
  // Ids of the tokens the template adds with add_special_tokens.
  std::vector<int32_t> template_special_ids() const;
  // Lowercase hex SHA-256 of the tokenizer.json bytes.
  const std::string& fingerprint() const { return fingerprint_; }
  const BpeModel& model() const { return *components_.model; }
  // -1 if absent.
  int32_t TokenToId(absl::string_view token) const;
  // Null if `id` is outside the vocabulary.
  const std::string* IdToToken(int32_t id) const;

 private:
  Tokenizer() = default;
  // `text` is well-formed UTF-8.
  std::vector<int32_t> EncodeValid(absl::string_view text, bool add_special_tokens) const;
  void EncodePlain(absl::string_view text, bool first_section, std::vector<int32_t>* ids) const;
  void EncodeNormalized(absl::string_view text, bool first_section,
                        std::vector<int32_t>* ids) const;

  Components components_;
  AddedVocabulary added_;
  std::string fingerprint_;
  int32_t vocab_size_ = 0;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_TOKENIZER_H_
