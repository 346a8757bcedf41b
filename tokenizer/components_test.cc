// Unit tests of the normalizers, pre-tokenizers and decoders.

#include "gtest/gtest.h"
#include "tokenizer/decoder.h"
#include "tokenizer/normalizer.h"
#include "tokenizer/pre_tokenizer.h"

namespace maximus::tokenizer {
namespace {

using Pieces = std::vector<std::string>;

Pieces PreTokenize(const PreTokenizer& pre, const std::string& text, bool first = true) {
  Pieces pieces{text};
  pre.PreTokenize(&pieces, first);
  return pieces;
}

TEST(NormalizerTest, EachKind) {
  auto replace = ReplaceNormalizer::Create(" ", false, "\xE2\x96\x81");
  ASSERT_TRUE(replace.ok());
  EXPECT_EQ((*replace)->Normalize("a b  c"),
            "a\xE2\x96\x81"
            "b\xE2\x96\x81\xE2\x96\x81"
            "c");
  auto regex = ReplaceNormalizer::Create("\\s+", true, " ");
  ASSERT_TRUE(regex.ok());
  EXPECT_EQ((*regex)->Normalize("a \t\n b"), "a b");
  EXPECT_EQ(PrependNormalizer("_").Normalize("x"), "_x");
  EXPECT_EQ(PrependNormalizer("_").Normalize(""), "");
  EXPECT_EQ(LowercaseNormalizer().Normalize("ÀB\xCE\xA3\xCE\x91\xCE\xA3"),  // ΣΑΣ: final sigma.
            "àb\xCF\x83\xCE\xB1\xCF\x82");
  EXPECT_EQ(UnicodeNormalizer(UnicodeNormalizer::Form::kNfc).Normalize("e\xCC\x81"), "\xC3\xA9");
  EXPECT_EQ(UnicodeNormalizer(UnicodeNormalizer::Form::kNfkc).Normalize("\xEF\xAC\x81\xC2\xB2"),
            "fi2");
  EXPECT_EQ(StripNormalizer(true, false).Normalize(" \t x \xE3\x80\x80"), "x \xE3\x80\x80");
  EXPECT_EQ(StripNormalizer(true, true).Normalize(" \t x \xE3\x80\x80"), "x");
  std::vector<std::unique_ptr<Normalizer>> steps;
  steps.push_back(std::make_unique<StripNormalizer>(true, true));
  steps.push_back(std::make_unique<LowercaseNormalizer>());
  steps.push_back(std::make_unique<PrependNormalizer>("^"));
  EXPECT_EQ(SequenceNormalizer(std::move(steps)).Normalize("  AbC "), "^abc");
}

TEST(PreTokenizerTest, SplitBehaviors) {
  const std::string text = "a-b--c";
  auto split = [&](SplitBehavior behavior, bool invert = false) {
    auto pre = SplitPreTokenizer::Create("-", false, behavior, invert);
    EXPECT_TRUE(pre.ok());
    return PreTokenize(**pre, text);
  };
  EXPECT_EQ(split(SplitBehavior::kRemoved), (Pieces{"a", "b", "c"}));
  EXPECT_EQ(split(SplitBehavior::kIsolated), (Pieces{"a", "-", "b", "-", "-", "c"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithPrevious), (Pieces{"a-", "b-", "-", "c"}));
  EXPECT_EQ(split(SplitBehavior::kMergedWithNext), (Pieces{"a", "-b", "-", "-c"}));
  EXPECT_EQ(split(SplitBehavior::kContiguous), (Pieces{"a", "-", "b", "--", "c"}));
  EXPECT_EQ(split(SplitBehavior::kRemoved, true), (Pieces{"-", "-", "-"}));
}

TEST(PreTokenizerTest, MetaspaceDigitsWhitespace) {
  MetaspacePreTokenizer always("\xE2\x96\x81", MetaspacePreTokenizer::PrependScheme::kAlways, true);
  EXPECT_EQ(PreTokenize(always, "hi you"), (Pieces{"\xE2\x96\x81hi", "\xE2\x96\x81you"}));
  MetaspacePreTokenizer first("_", MetaspacePreTokenizer::PrependScheme::kFirst, false);
  EXPECT_EQ(PreTokenize(first, "a b", true), (Pieces{"_a_b"}));
  EXPECT_EQ(PreTokenize(first, "a b", false), (Pieces{"a_b"}));
  auto digits = PatternPreTokenizer::Digits(false);
  ASSERT_TRUE(digits.ok());
  EXPECT_EQ(PreTokenize(**digits, "ab123c4"), (Pieces{"ab", "123", "c", "4"}));
  auto single = PatternPreTokenizer::Digits(true);
  ASSERT_TRUE(single.ok());
  EXPECT_EQ(PreTokenize(**single, "a12"), (Pieces{"a", "1", "2"}));
  auto whitespace = PatternPreTokenizer::Whitespace();
  ASSERT_TRUE(whitespace.ok());
  EXPECT_EQ(PreTokenize(**whitespace, "Hey, you!  ok"), (Pieces{"Hey", ",", "you", "!", "ok"}));
}

TEST(PreTokenizerTest, ByteLevelMapsBytes) {
  auto byte_level = ByteLevelPreTokenizer::Create(true, true);
  ASSERT_TRUE(byte_level.ok());
  // Prefix space, GPT-2 split, bytes as printable code points (space: U+0120).
  EXPECT_EQ(PreTokenize(**byte_level, "Hi é!"),
            (Pieces{"\xC4\xA0Hi", "\xC4\xA0\xC3\x83\xC2\xA9", "!"}));
}

std::string Decode(const Decoder& decoder, std::vector<DecodeToken> tokens) {
  decoder.DecodeChain(&tokens);
  std::string out;
  for (const DecodeToken& t : tokens) out += t.text;
  return out;
}

TEST(DecoderTest, EachKind) {
  ByteFallbackDecoder fallback;
  EXPECT_EQ(Decode(fallback, {{"<0xC3>"}, {"<0xA9>"}, {"x"}, {"<0xE2>"}}),
            "\xC3\xA9x\xEF\xBF\xBD");  // A truncated sequence becomes U+FFFD.
  EXPECT_EQ(Decode(StripDecoder(" ", 1, 1), {{"  a  "}}), " a ");
  EXPECT_EQ(Decode(MetaspaceDecoder("_", true), {{"_hello"}, {"_world"}}), "hello world");
  EXPECT_EQ(Decode(MetaspaceDecoder("_", false), {{"_hello"}}), " hello");
  ByteLevelDecoder byte_level;
  EXPECT_EQ(Decode(byte_level, {{"\xC4\xA0Hi"}, {"<|end|>", true}, {"\xC3\x83\xC2\xA9"}}),
            " Hi<|end|>\xC3\xA9");
  auto replace = ReplaceDecoder::Create("_", false, " ");
  ASSERT_TRUE(replace.ok());
  std::vector<std::unique_ptr<Decoder>> steps;
  steps.push_back(*std::move(replace));
  steps.push_back(std::make_unique<ByteFallbackDecoder>());
  steps.push_back(std::make_unique<FuseDecoder>());
  SequenceDecoder sequence(std::move(steps));
  std::vector<DecodeToken> tokens{{"a_"}, {"<0x41>"}, {"b"}};
  sequence.DecodeChain(&tokens);
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].text, "a Ab");
}

}  // namespace
}  // namespace maximus::tokenizer
