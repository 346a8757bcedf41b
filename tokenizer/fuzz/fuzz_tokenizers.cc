#include "tokenizer/fuzz/fuzz_tokenizers.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "tokenizer/bpe_trainer.h"
#include "tokenizer/byte_level.h"

namespace maximus::tokenizer {

std::string GemmaLikeJson() {
  BpeTrainerOptions options;
  options.vocab_size = 4 + 256 + 300;
  BpeTrainer trainer(options);
  trainer.AddText("The quick brown fox jumps over the lazy dog. the then there these those\n");
  trainer.AddText("敏捷的棕色狐狸跳过了那只懒狗。 Съешь же ещё этих мягких булок\n");
  trainer.AddText("👨‍👩‍👧 <tag> </tag>\n    indented code(); x += 1; // comment\n\n");
  trainer.AddText("\tTabs\tand  spaces  ");
  return *trainer.Train();
}

std::string ByteLevelJson() {
  const ByteLevelAlphabet& alphabet = ByteLevelAlphabet::Get();
  std::vector<std::string> vocab;
  for (int b = 0; b < 256; ++b) {
    vocab.push_back(absl::StrCat(JsonQuote(alphabet.Utf8(static_cast<uint8_t>(b))), ": ", b));
  }
  const std::vector<std::pair<std::string, std::string>> merges = {
      {"\xC4\xA0", "t"}, {"h", "e"}, {"\xC4\xA0t", "he"}, {"i", "n"},
      {"\xC4\xA0", "a"}, {"e", "r"}, {"o", "n"},          {"\xC4\xA0", "\xC4\xA0"}};
  std::vector<std::string> merge_json;
  int next = 256;
  for (const auto& [left, right] : merges) {
    vocab.push_back(absl::StrCat(JsonQuote(left + right), ": ", next++));
    merge_json.push_back(absl::StrCat("[", JsonQuote(left), ", ", JsonQuote(right), "]"));
  }
  return absl::StrCat(
      R"({"added_tokens": [{"id": 300, "content": "<|end|>", "special": true, "normalized": false},
          {"id": 301, "content": "<x>", "special": false, "lstrip": true, "rstrip": true,
           "single_word": true, "normalized": true}],
      "normalizer": {"type": "Sequence", "normalizers": [{"type": "NFC"}]},
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
      "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
      "model": {"type": "BPE", "ignore_merges": true, "vocab": {)",
      absl::StrJoin(vocab, ", "), "}, \"merges\": [", absl::StrJoin(merge_json, ", "), "]}}");
}

}  // namespace maximus::tokenizer
