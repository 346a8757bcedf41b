// The whole pipeline on small tokenizer.json files written here.

#include "tokenizer/tokenizer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace maximus::tokenizer {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kSpace[] = "\xE2\x96\x81";  // ▁

// A Gemma-like tokenizer: spaces to ▁, no pre-splitting, byte fallback.
// Ids: <unk> 0, <bos> 1, <0x00>..<0xFF> 2..257, then the tokens below.
std::string GemmaLike(const std::string& added = "") {
  std::vector<std::string> vocab = {"\"<unk>\": 0", "\"<bos>\": 1"};
  for (int b = 0; b < 256; ++b) vocab.push_back(absl::StrFormat("\"<0x%02X>\": %d", b, b + 2));
  const char* tokens[] = {"a",
                          "b",
                          "c",
                          kSpace,
                          "ab",
                          "\xE2\x96\x81"
                          "a",
                          "abc",
                          "bc",
                          "aa"};
  for (int i = 0; i < 9; ++i) vocab.push_back(absl::StrFormat("\"%s\": %d", tokens[i], 258 + i));
  return absl::StrCat(R"({
    "added_tokens": [
      {"id": 1, "content": "<bos>", "special": true, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false})",
                      added, R"(],
    "normalizer": {"type": "Replace", "pattern": {"String": " "}, "content": "▁"},
    "pre_tokenizer": null,
    "post_processor": {"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                 {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {"<bos>": {"id": "<bos>", "ids": [1], "tokens": ["<bos>"]}}},
    "decoder": {"type": "Sequence", "decoders": [
      {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
      {"type": "ByteFallback"}, {"type": "Fuse"}]},
    "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>", "fuse_unk": true,
      "byte_fallback": true, "vocab": {)",
                      absl::StrJoin(vocab, ", "), R"(},
      "merges": ["a b", ["▁", "a"], "ab c", "b c", "a a"]}
  })");
}

std::unique_ptr<Tokenizer> Load(const std::string& json) {
  auto tokenizer = Tokenizer::FromJson(json);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return tokenizer.ok() ? *std::move(tokenizer) : nullptr;
}

std::vector<int32_t> Ids(const Tokenizer& t, const std::string& text, bool special = false) {
  auto ids = t.Encode(text, EncodeOptions{special, false});
  EXPECT_TRUE(ids.ok()) << ids.status();
  return ids.ok() ? *ids : std::vector<int32_t>{};
}

TEST(TokenizerTest, MergesByRankThenLeftmost) {
  auto t = Load(GemmaLike());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "abc"), ElementsAre(264));             // a+b (rank 0), then ab+c.
  EXPECT_THAT(Ids(*t, "ab c"), ElementsAre(262, 261, 260));  // ab ▁ c
  EXPECT_THAT(Ids(*t, " a"), ElementsAre(263));              // ▁a
  EXPECT_THAT(Ids(*t, "aaa"), ElementsAre(266, 258));        // Leftmost pair first: aa a.
  EXPECT_THAT(Ids(*t, "abc", true), ElementsAre(1, 264));    // The template's <bos>.
  EXPECT_EQ(t->vocab_size(), 267);
  EXPECT_THAT(t->template_special_ids(), ElementsAre(1));
  EXPECT_EQ(t->TokenToId("<bos>"), 1);
  EXPECT_EQ(t->TokenToId("abc"), 264);
  EXPECT_EQ(t->TokenToId("zzz"), -1);
  EXPECT_EQ(*t->IdToToken(263),
            "\xE2\x96\x81"
            "a");
  EXPECT_EQ(t->IdToToken(267), nullptr);
}

TEST(TokenizerTest, ByteFallbackAndRoundTrip) {
  auto t = Load(GemmaLike());
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "\xC3\xA9"), ElementsAre(0xC3 + 2, 0xA9 + 2));
  for (const std::string text : {"ab cé", "  a\tb\n\xF0\x9F\x99\x82", "<bos>abc<bos>"}) {
    auto decoded = t->Decode(Ids(*t, text));
    ASSERT_TRUE(decoded.ok());
    EXPECT_EQ(*decoded, text);
  }
  EXPECT_THAT(Ids(*t, "x<bos>a"), ElementsAre('x' + 2, 1, 258));
  auto skipped = t->Decode(Ids(*t, "a", true), DecodeOptions{true});
  ASSERT_TRUE(skipped.ok());
  EXPECT_EQ(*skipped, "a");
}

TEST(TokenizerTest, InvalidInputIsDefined) {
  auto t = Load(GemmaLike());
  ASSERT_NE(t, nullptr);
  // Lenient (default): each maximal ill-formed subsequence is U+FFFD.
  EXPECT_THAT(Ids(*t, "a\xFF"), ElementsAre(258, 0xEF + 2, 0xBF + 2, 0xBD + 2));
  auto strict = t->Encode("ab\xFF", EncodeOptions{false, true});
  ASSERT_FALSE(strict.ok());
  EXPECT_EQ(strict.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(strict.status().message(), HasSubstr("offset 2"));
  auto bad_id = t->Decode({258, 5000});
  ASSERT_FALSE(bad_id.ok());
  EXPECT_THAT(bad_id.status().message(), HasSubstr("5000"));
  EXPECT_FALSE(t->Decode({-1}).ok());
  // Byte tokens that do not form UTF-8 decode to U+FFFD.
  auto partial = t->Decode({0xE2 + 2});
  ASSERT_TRUE(partial.ok());
  EXPECT_EQ(*partial, "\xEF\xBF\xBD");
}

TEST(TokenizerTest, LongWordMergesToPairs) {
  // One BPE word of 2 MB. A quadratic merge would run past the test's
  // timeout; //tokenizer:bench_long_word measures how the time grows.
  auto t = Load(GemmaLike());
  ASSERT_NE(t, nullptr);
  const std::string text(2 << 20, 'a');
  const std::vector<int32_t> ids = Ids(*t, text);
  ASSERT_EQ(ids.size(), text.size() / 2);
  EXPECT_EQ(ids.front(), 266);
  EXPECT_EQ(ids.back(), 266);
}

TEST(TokenizerTest, AddedTokenOptions) {
  auto t = Load(GemmaLike(R"(,
      {"id": 258, "content": "<l>", "lstrip": true, "special": false, "normalized": false},
      {"id": 259, "content": "<r>", "rstrip": true, "special": false, "normalized": false},
      {"id": 260, "content": "cab", "single_word": true, "special": false, "normalized": false},
      {"id": 261, "content": "bb", "special": false, "normalized": true})"));
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "a  <l>"), ElementsAre(258, 258));  // a, <l> (spaces swallowed)
  EXPECT_THAT(Ids(*t, "<r>  a"), ElementsAre(259, 258));
  EXPECT_THAT(Ids(*t, "x cab"), ElementsAre('x' + 2, 261, 260));
  // Inside a word "cab" is not matched: c a b -> c ab.
  EXPECT_THAT(Ids(*t, "xcab"), ElementsAre('x' + 2, 260, 262));
  EXPECT_THAT(Ids(*t, "abb"), ElementsAre(258, 261));  // Normalized added token.
}

TEST(TokenizerTest, ByteLevelTokenizer) {
  std::vector<std::string> vocab;
  for (int b = 0; b < 256; ++b) {
    // Printable ASCII maps to itself; quote and backslash need escaping.
    vocab.push_back(absl::StrFormat("\"\\u%04x\": %d", b < 33 ? 256 + b : b == 127 ? 289 : b, b));
  }
  // Non-printable bytes above 127 are left out (not needed here) except those above.
  vocab.push_back("\"\\u0120t\": 300");
  vocab.push_back("\"he\": 301");
  vocab.push_back("\"\\u0120the\": 302");
  const std::string json =
      absl::StrCat(R"({"added_tokens": [{"id": 400, "content": "<|end|>",
      "special": true}], "normalizer": null,
      "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
      "post_processor": {"type": "ByteLevel"}, "decoder": {"type": "ByteLevel"},
      "model": {"type": "BPE", "ignore_merges": true, "vocab": {)",
                   absl::StrJoin(vocab, ", "), R"(}, "merges": ["Ġ t", "h e", "Ġt he"]}})");
  auto t = Load(json);
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "the the<|end|>"), ElementsAre('t', 301, 302, 400));
  auto text = t->Decode({'t', 301, 302, 400, 300});
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "the the<|end|> t");
}

TEST(TokenizerTest, SubwordAffixesUnknownAndIgnoreMerges) {
  // Hugging Face semantics: "##" before every character but the first,
  // "</w>" after the last; a merge's result drops the right part's prefix.
  auto t = Load(R"({"model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true,
      "continuing_subword_prefix": "##", "end_of_word_suffix": "</w>",
      "vocab": {"<unk>": 0, "a": 1, "##b</w>": 2, "ab</w>": 3, "b</w>": 4, "##b": 5, "a</w>": 6},
      "merges": [["a", "##b</w>"]]},
    "pre_tokenizer": {"type": "WhitespaceSplit"}})");
  ASSERT_NE(t, nullptr);
  EXPECT_THAT(Ids(*t, "ab b a"), ElementsAre(3, 4, 6));
  // Unknown characters become <unk>, and runs of them fuse into one.
  EXPECT_THAT(Ids(*t, "xyz ab"), ElementsAre(0, 3));
  EXPECT_THAT(Ids(*t, "axb"), ElementsAre(1, 0, 2));  // a, ##x (unknown), ##b</w>
}

TEST(TokenizerTest, IgnoreMergesTakesWholeWords) {
  // With ignore_merges a pre-token found in the vocabulary is one token even
  // when the merges would not build it.
  const std::string base = R"({"model": {"type": "BPE", "ignore_merges": IGNORE,
      "vocab": {"a": 0, "b": 1, "c": 2, "ab": 3, "abc": 4}, "merges": ["a b"]}})";
  auto with = Load(absl::StrReplaceAll(base, {{"IGNORE", "true"}}));
  auto without = Load(absl::StrReplaceAll(base, {{"IGNORE", "false"}}));
  ASSERT_NE(with, nullptr);
  ASSERT_NE(without, nullptr);
  EXPECT_THAT(Ids(*with, "abc"), ElementsAre(4));
  EXPECT_THAT(Ids(*without, "abc"), ElementsAre(3, 2));
}

TEST(TokenizerTest, UnsupportedComponentsAreNamed) {
  const std::string base = GemmaLike();
  auto expect_error = [](const std::string& json, const std::string& name) {
    auto t = Tokenizer::FromJson(json);
    ASSERT_FALSE(t.ok());
    EXPECT_THAT(t.status().message(), HasSubstr(name));
  };
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {}}})", "WordPiece");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                   "normalizer": {"type": "BertNormalizer"}})",
               "BertNormalizer");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                   "pre_tokenizer": {"type": "Punctuation"}})",
               "Punctuation");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                   "decoder": {"type": "CTC"}})",
               "CTC");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                   "post_processor": {"type": "BertProcessing"}})",
               "BertProcessing");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}, "merges": []},
                   "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(x"},
                   "behavior": "Isolated"}})",
               "(x");
  expect_error("{not json", "JSON");
  expect_error(R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "unk_token": "<u>"}})",
               "<u>");
}

// A vocabulary that cannot mean one thing is refused at load, naming what is
// wrong, rather than encoding or decoding inconsistently later.
TEST(TokenizerTest, InconsistentVocabulariesAreRefused) {
  auto expect_invalid = [](const std::string& vocab, const std::string& merges,
                           const std::vector<std::string>& needles, const std::string& added = "") {
    const std::string json =
        absl::StrCat(R"({"added_tokens": [)", added, R"(], "model": {"type": "BPE", "vocab": {)",
                     vocab, R"(}, "merges": [)", merges, "]}}");
    auto t = Tokenizer::FromJson(json);
    ASSERT_FALSE(t.ok()) << json;
    EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
    for (const std::string& needle : needles) {
      EXPECT_THAT(t.status().message(), HasSubstr(needle)) << json;
    }
  };
  // Two tokens with one id.
  expect_invalid(R"("a": 0, "b": 1, "ab": 1)", R"("a b")", {"id 1", "\"b\"", "\"ab\""});
  // One token twice.
  expect_invalid(R"("a": 0, "b": 1, "a": 2)", "", {"\"a\" appears twice"});
  // A merge whose result is not in the vocabulary, and one whose part is not.
  expect_invalid(R"("a": 0, "b": 1, "c": 2, "ab": 3)", R"("a b", "b c")",
                 {"merge 1 \"b c\"", "\"bc\" is not in the vocab"});
  expect_invalid(R"("a": 0, "b": 1, "ab": 2)", R"(["a", "x"])", {"\"x\" is not in the vocab"});
  // An id that would size a table of 2 billion entries.
  expect_invalid(R"("a": 0, "huge": 2000000000)", "", {"\"huge\"", "2000000000"});
  expect_invalid(R"("a": 0)", "", {"\"<big>\"", "2000000000"},
                 R"({"id": 2000000000, "content": "<big>", "special": true})");
  // The consistent vocabulary loads.
  auto fine = Tokenizer::FromJson(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
  ASSERT_TRUE(fine.ok()) << fine.status();
  EXPECT_EQ((*fine)->vocab_size(), 3);
}

}  // namespace
}  // namespace maximus::tokenizer
