// Added tokens of tokenizer.json: found in the text before the model runs
// (leftmost, longest first) and never split.

#ifndef MAXIMUS_TOKENIZER_ADDED_VOCABULARY_H_
#define MAXIMUS_TOKENIZER_ADDED_VOCABULARY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

struct AddedToken {
  std::string content;
  int32_t id = -1;
  bool special = false;
  bool normalized = false;   // Matched in normalized text rather than the input.
  bool lstrip = false;       // Swallows white space on its left.
  bool rstrip = false;       // Swallows white space on its right.
  bool single_word = false;  // Only matches when not inside a word.
};

// A part of a text: an added token (id >= 0) or text for the model (id -1).
struct Section {
  absl::string_view text;
  int32_t id = -1;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  // `tokens` matched as written in the text; `normalized_contents[i]` is the
  // normalized form of tokens[i].content, used for tokens with `normalized`.
  AddedVocabulary(std::vector<AddedToken> tokens, const std::vector<std::string>& normalized);

  // Splits raw input on the non-normalized added tokens.
  void SplitRaw(absl::string_view text, std::vector<Section>* out) const {
    raw_.Split(tokens_, text, out);
  }
  // Splits normalized text on the normalized added tokens.
  void SplitNormalized(absl::string_view text, std::vector<Section>* out) const {
    normalized_.Split(tokens_, text, out);
  }
  bool has_normalized() const { return !normalized_.empty(); }

  const std::vector<AddedToken>& tokens() const { return tokens_; }
  // Index into tokens() of the added token with `id`, or -1.
  int IndexOfId(int32_t id) const {
    auto it = by_id_.find(id);
    return it == by_id_.end() ? -1 : it->second;
  }
  // Id of the added token spelled `content`, or -1.
  int32_t IdOfContent(absl::string_view content) const {
    auto it = by_content_.find(content);
    return it == by_content_.end() ? -1 : it->second;
  }

 private:
  // A byte trie over the token contents it holds.
  class Trie {
   public:
    void Insert(absl::string_view key, int token_index);
    bool empty() const { return terminal_.size() <= 1; }
    void Split(const std::vector<AddedToken>& tokens, absl::string_view text,
               std::vector<Section>* out) const;

   private:
    int32_t Child(int32_t node, uint8_t byte) const {
      if (node == 0) return root_[byte];
      auto it = children_.find((uint64_t(node) << 8) | byte);
      return it == children_.end() ? -1 : it->second;
    }
    int32_t root_[256];
    absl::flat_hash_map<uint64_t, int32_t> children_;
    std::vector<int32_t> terminal_{-1};  // Node -> token index or -1.

   public:
    Trie() { std::fill(std::begin(root_), std::end(root_), -1); }
  };

  std::vector<AddedToken> tokens_;
  absl::flat_hash_map<int32_t, int> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  Trie raw_, normalized_;
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_ADDED_VOCABULARY_H_
