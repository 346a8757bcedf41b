// Learns a byte-fallback BPE vocabulary from text and writes it as a
// tokenizer.json in Gemma 3's layout (spaces as "▁", no pre-splitting,
// <0xXX> byte tokens, special tokens as added tokens), which Tokenizer and the
// reference both load.

#ifndef MAXIMUS_TOKENIZER_BPE_TRAINER_H_
#define MAXIMUS_TOKENIZER_BPE_TRAINER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

struct BpeTrainerOptions {
  int vocab_size = 32000;  // Up to 262,144; includes specials and byte tokens.
  // Ids 0.. in this order. "<unk>" becomes the unknown token and "<bos>" the
  // template's start token when present.
  std::vector<std::string> special_tokens = {"<pad>", "<eos>", "<bos>", "<unk>"};
  int min_frequency = 2;    // Pairs seen fewer times are not merged.
  int max_alphabet = 4000;  // Most frequent characters kept as initial tokens.
};

struct BpeTrainerStats {
  int64_t words = 0;     // Distinct words counted.
  int64_t alphabet = 0;  // Characters in the initial vocabulary.
  int64_t merges = 0;
  int64_t vocab_size = 0;
};

class BpeTrainer {
 public:
  explicit BpeTrainer(BpeTrainerOptions options);

  // Counts the words of `text` (ill-formed UTF-8 is replaced by U+FFFD).
  void AddText(absl::string_view text);

  // Learns the merges and returns the tokenizer.json text.
  absl::StatusOr<std::string> Train(BpeTrainerStats* stats = nullptr);

 private:
  BpeTrainerOptions options_;
  absl::flat_hash_map<std::string, int64_t> words_;
};

// JSON string literal (with quotes) for UTF-8 `s`.
std::string JsonQuote(absl::string_view s);

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_BPE_TRAINER_H_
