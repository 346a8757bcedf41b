#include "tokenizer/utf8.h"

#include "gtest/gtest.h"

namespace maximus::tokenizer {
namespace {

TEST(Utf8Test, FindsTheFirstIllFormedByte) {
  EXPECT_TRUE(IsValidUtf8("plain ascii text, long enough for the fast path"));
  EXPECT_TRUE(IsValidUtf8("h\xC3\xA9llo \xE4\xB8\x96 \xF0\x9F\x99\x82"));
  EXPECT_EQ(FindInvalidUtf8("abcdefghij\xFFxyz"), 10u);
  EXPECT_EQ(FindInvalidUtf8("\xC0\x80"), 0u);          // Overlong.
  EXPECT_EQ(FindInvalidUtf8("ab\xED\xA0\x80"), 2u);    // Surrogate.
  EXPECT_EQ(FindInvalidUtf8("\xF4\x90\x80\x80"), 0u);  // Above U+10FFFF.
  EXPECT_EQ(FindInvalidUtf8("x\xE2\x82"), 1u);         // Truncated.
}

TEST(Utf8Test, SanitizeReplacesMaximalSubparts) {
  // As the WHATWG decoder: one U+FFFD per maximal ill-formed subsequence.
  EXPECT_EQ(SanitizeUtf8("a\xE2\x82"
                         "b"),
            "a\xEF\xBF\xBD"
            "b");
  EXPECT_EQ(SanitizeUtf8("\xC0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("\xF0\x9F\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(SanitizeUtf8("ok \xF0\x9F\x99\x82"), "ok \xF0\x9F\x99\x82");
}

TEST(Utf8Test, CodePointsRoundTrip) {
  for (char32_t cp : {0x41u, 0xE9u, 0x4E16u, 0x1F642u, 0x10FFFFu}) {
    std::string s;
    AppendUtf8(cp, &s);
    size_t pos = 0;
    EXPECT_EQ(NextCodePoint(s, &pos), cp);
    EXPECT_EQ(pos, s.size());
    EXPECT_EQ(Utf8Length(static_cast<uint8_t>(s[0])), s.size());
  }
}

TEST(Utf8Test, JavaScriptWhitespace) {
  EXPECT_TRUE(IsJsWhitespace(' '));
  EXPECT_TRUE(IsJsWhitespace(0xFEFF));
  EXPECT_TRUE(IsJsWhitespace(0x3000));
  EXPECT_FALSE(IsJsWhitespace(0x85));  // NEL is not white space in JavaScript.
  EXPECT_FALSE(IsJsWhitespace('x'));
}

}  // namespace
}  // namespace maximus::tokenizer
