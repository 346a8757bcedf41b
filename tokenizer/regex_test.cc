#include "tokenizer/regex.h"

#include "gtest/gtest.h"

namespace maximus::tokenizer {
namespace {

std::vector<std::string> Matches(const Regex& regex, const std::string& text) {
  std::vector<std::pair<size_t, size_t>> spans;
  regex.FindAll(text, &spans);
  std::vector<std::string> out;
  for (const auto& [b, e] : spans) out.push_back(text.substr(b, e - b));
  return out;
}

TEST(RegexTest, Llama3PatternSplitsLikeTheReference) {
  auto regex = Regex::Compile(
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
  ASSERT_TRUE(regex.ok()) << regex.status();
  EXPECT_EQ(Matches(**regex, "I'M here, 12345 times!  \n\nok"),
            (std::vector<std::string>{"I", "'M", " here", ",", " ", "123", "45", " times", "!",
                                      "  \n\n", "ok"}));
}

TEST(RegexTest, WhitespaceHasJavaScriptMeaning) {
  auto regex = Regex::Compile("\\s+");
  ASSERT_TRUE(regex.ok());
  // U+FEFF is white space in JavaScript, U+0085 is not.
  EXPECT_EQ(Matches(**regex,
                    "a\xEF\xBB\xBF"
                    "b\xC2\x85"
                    "c"),
            (std::vector<std::string>{"\xEF\xBB\xBF"}));
  // Case-insensitive contractions are ASCII-only, as the reference spells them.
  auto contraction = Regex::Compile("(?i:'s|'t|'re|'ve|'m|'ll|'d)");
  ASSERT_TRUE(contraction.ok());
  EXPECT_EQ(Matches(**contraction, "'S '\xC5\xBF").size(), 1u);  // Not the long s.
}

TEST(RegexTest, LiteralAndReplace) {
  auto literal = Regex::Literal("a.b\\E");
  ASSERT_TRUE(literal.ok());
  EXPECT_EQ(Matches(**literal, "a.b\\E axb a.b\\E"),
            (std::vector<std::string>{"a.b\\E", "a.b\\E"}));
  EXPECT_EQ((*literal)->ReplaceAll("1a.b\\E2", "-"), "1-2");
}

TEST(RegexTest, InvalidPatternNamesItself) {
  auto regex = Regex::Compile("(unclosed");
  ASSERT_FALSE(regex.ok());
  EXPECT_NE(regex.status().message().find("(unclosed"), std::string::npos);
}

TEST(RegexTest, EmptyMatchesAreSkipped) {
  auto regex = Regex::Compile("x*");
  ASSERT_TRUE(regex.ok());
  EXPECT_EQ(Matches(**regex, "axxb\xC3\xA9x"), (std::vector<std::string>{"xx", "x"}));
}

}  // namespace
}  // namespace maximus::tokenizer
