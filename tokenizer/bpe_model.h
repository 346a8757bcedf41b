// Byte-pair-encoding model of tokenizer.json: merges ranked pairs of symbols
// inside one pre-token, lowest rank first, leftmost first among equal ranks.

#ifndef MAXIMUS_TOKENIZER_BPE_MODEL_H_
#define MAXIMUS_TOKENIZER_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace maximus::tokenizer {

struct BpeOptions {
  std::string unk_token;  // Empty: no unknown token.
  std::string continuing_subword_prefix;
  std::string end_of_word_suffix;
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool ignore_merges = false;
};

class BpeModel {
 public:
  // The largest id a vocabulary may hold: ids index a table, so an id of
  // 2·10^9 would allocate gigabytes. 2^24 tokens is 64 times Gemma 3's.
  static constexpr int32_t kMaxTokenId = (1 << 24) - 1;

  // `merges` in rank order. INVALID_ARGUMENT naming the token or merge for a
  // negative id or one above kMaxTokenId, two tokens with one id, a token
  // listed twice, or a merge whose parts or result are not in the vocabulary
  // (as Hugging Face's tokenizers refuses them). The views need only live
  // during the call.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      const std::vector<std::pair<absl::string_view, int32_t>>& vocab,
      const std::vector<std::pair<absl::string_view, absl::string_view>>& merges,
      BpeOptions options);

  // Appends the ids of one pre-token (valid UTF-8).
  void EncodeWord(absl::string_view word, std::vector<int32_t>* ids) const;

  // -1 if absent.
  int32_t TokenToId(absl::string_view token) const {
    auto it = vocab_.find(token);
    return it == vocab_.end() ? -1 : it->second;
  }
  // Null if `id` has no token.
  const std::string* IdToToken(int32_t id) const {
    return id >= 0 && id < static_cast<int32_t>(id_to_token_.size()) && has_token_[id]
               ? &id_to_token_[id]
               : nullptr;
  }
  // One more than the largest id.
  int32_t vocab_size() const { return static_cast<int32_t>(id_to_token_.size()); }
  int32_t unk_id() const { return unk_id_; }
  const BpeOptions& options() const { return options_; }
  size_t num_merges() const { return merges_.size(); }

 private:
  struct Merge {
    int32_t rank;
    int32_t id;
  };

  BpeModel() = default;
  int32_t CharId(char32_t cp) const;
  // Merges the symbols of `chunk` (the whole word when affixes are in use).
  void MergeChunk(absl::string_view chunk, bool first, bool last, std::vector<int32_t>* ids) const;
  void EncodeChunkCached(absl::string_view chunk, std::vector<int32_t>* ids) const;
  void EmitUnknown(absl::string_view text, std::vector<int32_t>* ids) const;
  bool Joinable(char32_t left, char32_t right) const {
    return joinable_.contains((uint64_t{left} << 32) | right);
  }
  const Merge* FindMerge(int32_t left, int32_t right) const {
    auto it =
        merges_.find((uint64_t{static_cast<uint32_t>(left)} << 32) | static_cast<uint32_t>(right));
    return it == merges_.end() ? nullptr : &it->second;
  }

  BpeOptions options_;
  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<bool> has_token_;
  std::vector<int32_t> bmp_char_ids_;  // Code points below 0x10000 -> id or -1.
  absl::flat_hash_map<char32_t, int32_t> astral_char_ids_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  // (last code point of a merge's left part, first of its right part). Two
  // adjacent characters outside this set are never joined by any merge, so a
  // word splits there into chunks that merge independently (and are cached).
  absl::flat_hash_set<uint64_t> joinable_;
  bool chunking_ = true;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];  // <0xXX> tokens, -1 where absent.
  uint64_t instance_ = 0;  // Keys the per-thread chunk cache.
};

}  // namespace maximus::tokenizer

#endif  // MAXIMUS_TOKENIZER_BPE_MODEL_H_
