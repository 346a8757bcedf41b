#include "tokenizer/utf8.h"

#include "gtest/gtest.h"
#include "tokenizer/sha256.h"

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

TEST(Sha256Test, KnownDigests) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

}  // namespace
}  // namespace maximus::tokenizer
