// The Gemma chat template on the real Gemma 3 tokenizer (path in argv[1]):
// exact token and loss-mask layouts, role handling and errors.

#include "data_service/chat_template.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tokenizer/tokenizer.h"

namespace maximus::data {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

std::string* tokenizer_path = nullptr;

constexpr int32_t kStart = 105;    // <start_of_turn>
constexpr int32_t kEnd = 106;      // <end_of_turn>
constexpr int32_t kNewline = 107;  // "\n"
constexpr int32_t kUser = 2364;    // "user"
constexpr int32_t kModel = 4368;   // "model"

class ChatTemplateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto tok = tokenizer::Tokenizer::FromFile(*tokenizer_path);
    ASSERT_TRUE(tok.ok()) << tok.status();
    tok_ = tok->release();
  }
  static void TearDownTestSuite() {
    delete tok_;
    tok_ = nullptr;
  }

  static std::vector<int32_t> Encode(const std::string& text) {
    auto ids = tok_->Encode(text);
    EXPECT_TRUE(ids.ok()) << ids.status();
    return ids.ok() ? *ids : std::vector<int32_t>{};
  }

  static Document Chat(std::vector<ChatMessage> messages,
                       ChatLossMode mode = ChatLossMode::kModelTurns) {
    auto doc = BuildChatDocument(*tok_, messages, mode);
    EXPECT_TRUE(doc.ok()) << doc.status();
    return doc.ok() ? *std::move(doc) : Document{};
  }

  static tokenizer::Tokenizer* tok_;
};

tokenizer::Tokenizer* ChatTemplateTest::tok_ = nullptr;

TEST_F(ChatTemplateTest, SpecialTokensHaveGemmaIds) {
  EXPECT_EQ(tok_->TokenToId("<start_of_turn>"), kStart);
  EXPECT_EQ(tok_->TokenToId("<end_of_turn>"), kEnd);
  EXPECT_THAT(Encode("<start_of_turn>user\n"), ElementsAre(kStart, kUser, kNewline));
  EXPECT_THAT(Encode("<start_of_turn>model\n"), ElementsAre(kStart, kModel, kNewline));
}

TEST_F(ChatTemplateTest, TwoTurnsExactLayout) {
  const Document doc = Chat({{"user", "Hi there"}, {"model", "Hello! How can I help?"}});
  // clang-format off
  EXPECT_THAT(doc.tokens, ElementsAre(
      kStart, kUser, kNewline,                                 // header
      10979, 993,                                              // "Hi there"
      kEnd, kNewline,                                          // footer
      kStart, kModel, kNewline,                                // header
      9259, 236888, 2088, 740, 564, 1601, 236881,              // "Hello! How can I help?"
      kEnd, kNewline));                                        // footer
  EXPECT_THAT(doc.loss_mask, ElementsAre(
      0, 0, 0,
      0, 0,
      0, 0,
      0, 0, 0,
      1, 1, 1, 1, 1, 1, 1,
      1, 0));
  // clang-format on
}

TEST_F(ChatTemplateTest, FourTurnsExactLayout) {
  const Document doc =
      Chat({{"user", "What is 2+2?"}, {"model", "4."}, {"user", "Thanks"}, {"model", "Hi there"}});
  // clang-format off
  EXPECT_THAT(doc.tokens, ElementsAre(
      kStart, kUser, kNewline, 3689, 563, 236743, 236778, 236862, 236778, 236881, kEnd, kNewline,
      kStart, kModel, kNewline, 236812, 236761, kEnd, kNewline,
      kStart, kUser, kNewline, 12879, kEnd, kNewline,
      kStart, kModel, kNewline, 10979, 993, kEnd, kNewline));
  EXPECT_THAT(doc.loss_mask, ElementsAre(
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0, 0, 1, 1, 1, 0,
      0, 0, 0, 0, 0, 0,
      0, 0, 0, 1, 1, 1, 0));
  // clang-format on
  // The mask is 1 exactly on model content and each model turn's <end_of_turn>.
  int ones = 0;
  for (size_t i = 0; i < doc.tokens.size(); ++i) {
    ones += doc.loss_mask[i];
    if (doc.tokens[i] == kStart || doc.tokens[i] == kNewline) {
      EXPECT_EQ(doc.loss_mask[i], 0) << i;
    }
  }
  EXPECT_EQ(ones, 2 + 1 + 2 + 1);
  // For Gemma, encoding the turns apart gives the same ids as encoding the
  // whole rendered conversation: the header ends in the "\n" added token.
  EXPECT_EQ(doc.tokens, Encode("<start_of_turn>user\nWhat is 2+2?<end_of_turn>\n"
                               "<start_of_turn>model\n4.<end_of_turn>\n"
                               "<start_of_turn>user\nThanks<end_of_turn>\n"
                               "<start_of_turn>model\nHi there<end_of_turn>\n"));
}

TEST_F(ChatTemplateTest, AllTurnsMasksContentAndEndOfTurnOnly) {
  const Document doc =
      Chat({{"user", "What is 2+2?"}, {"model", "4."}, {"user", "Thanks"}, {"model", "Hi there"}},
           ChatLossMode::kAllTurns);
  // clang-format off
  EXPECT_THAT(doc.loss_mask, ElementsAre(
      0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0,
      0, 0, 0, 1, 1, 1, 0,
      0, 0, 0, 1, 1, 0,
      0, 0, 0, 1, 1, 1, 0));
  // clang-format on
  EXPECT_EQ(
      doc.tokens,
      Chat({{"user", "What is 2+2?"}, {"model", "4."}, {"user", "Thanks"}, {"model", "Hi there"}})
          .tokens);
}

TEST_F(ChatTemplateTest, AssistantIsModel) {
  const Document as_model = Chat({{"user", "Hi there"}, {"model", "Thanks"}});
  const Document as_assistant = Chat({{"user", "Hi there"}, {"assistant", "Thanks"}});
  EXPECT_EQ(as_assistant.tokens, as_model.tokens);
  EXPECT_EQ(as_assistant.loss_mask, as_model.loss_mask);
  EXPECT_THAT(std::vector<int32_t>(as_assistant.tokens.begin() + 7, as_assistant.tokens.end()),
              ElementsAre(kStart, kModel, kNewline, 12879, kEnd, kNewline));
}

TEST_F(ChatTemplateTest, SystemFoldsIntoFirstUserTurn) {
  const Document doc = Chat({{"system", "Be brief."}, {"user", "What is 2+2?"}, {"model", "4."}});
  // clang-format off
  EXPECT_THAT(doc.tokens, ElementsAre(
      kStart, kUser, kNewline,
      3912, 8652, 236761, 108, 3689, 563, 236743, 236778, 236862, 236778, 236881,  // system "\n\n" user
      kEnd, kNewline,
      kStart, kModel, kNewline, 236812, 236761, kEnd, kNewline));
  EXPECT_THAT(doc.loss_mask, ElementsAre(
      0, 0, 0,
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
      0, 0,
      0, 0, 0, 1, 1, 1, 0));
  // clang-format on
  EXPECT_EQ(doc.tokens, Chat({{"user", "Be brief.\n\nWhat is 2+2?"}, {"model", "4."}}).tokens);
  // With kAllTurns the system text trains as part of the user turn.
  const Document all = Chat({{"system", "Be brief."}, {"user", "What is 2+2?"}, {"model", "4."}},
                            ChatLossMode::kAllTurns);
  EXPECT_EQ(all.loss_mask[3], 1);
  EXPECT_EQ(all.loss_mask[13], 1);
}

TEST_F(ChatTemplateTest, EmptyContentStillHasHeaderAndFooter) {
  const Document doc = Chat({{"user", ""}, {"model", "4."}});
  EXPECT_THAT(doc.tokens, ElementsAre(kStart, kUser, kNewline, kEnd, kNewline, kStart, kModel,
                                      kNewline, 236812, 236761, kEnd, kNewline));
}

void ExpectInvalid(const absl::StatusOr<Document>& doc, const std::string& part1,
                   const std::string& part2) {
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument) << doc.status();
  EXPECT_THAT(doc.status().message(), HasSubstr(part1));
  EXPECT_THAT(doc.status().message(), HasSubstr(part2));
}

TEST_F(ChatTemplateTest, Errors) {
  const auto mode = ChatLossMode::kModelTurns;
  std::vector<ChatMessage> m = {{"user", "a"}, {"model", "b"}, {"bot", "c"}};
  ExpectInvalid(BuildChatDocument(*tok_, m, mode), "messages[2].role", "\"bot\"");
  ExpectInvalid(BuildChatDocument(*tok_, {}, mode), "messages", "empty");
  m = {{"user", "a"}, {"system", "b"}};
  ExpectInvalid(BuildChatDocument(*tok_, m, mode), "messages[1].role", "first");
  m = {{"system", "a"}};
  ExpectInvalid(BuildChatDocument(*tok_, m, mode), "messages[0].role", "user");
  m = {{"system", "a"}, {"model", "b"}};
  ExpectInvalid(BuildChatDocument(*tok_, m, mode), "messages[1].role", "user");
  m = {{"User", "a"}};  // Roles are case-sensitive, as in Gemma's template.
  ExpectInvalid(BuildChatDocument(*tok_, m, mode), "messages[0].role", "\"User\"");
  m = {{"user", "ok"}, {"model", "bad \xC3\x28 byte"}};
  ExpectInvalid(BuildChatDocument(*tok_, m, mode), "messages[1].content", "offset 4");
  EXPECT_TRUE(ValidateChat(std::vector<ChatMessage>{{"system", "s"}, {"user", "u"}}).ok());
}

TEST_F(ChatTemplateTest, TextDocument) {
  auto doc = BuildTextDocument(*tok_, "Hello! How can I help?");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_THAT(doc->tokens, ElementsAre(9259, 236888, 2088, 740, 564, 1601, 236881));
  EXPECT_TRUE(doc->loss_mask.empty());  // All tokens train.
  const std::string text = "Tabs\tand  spaces\n\xE4\xB8\x96\xE7\x95\x8C \xF0\x9F\x99\x82 done";
  doc = BuildTextDocument(*tok_, text);
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_THAT(doc->tokens, ElementsAreArray(Encode(text)));

  ExpectInvalid(BuildTextDocument(*tok_, ""), "empty", "");
  ExpectInvalid(BuildTextDocument(*tok_, "abc\xFF"), "UTF-8", "offset 3");
  ExpectInvalid(BuildTextDocument(*tok_, std::string("ab\0\xED\xA0\x80", 6)), "UTF-8", "offset 3");
}

TEST(ChatTemplateNoSpecialsTest, FailsWithoutSpecialTurnTokens) {
  auto plain = tokenizer::Tokenizer::FromJson(
      R"({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}})");
  ASSERT_TRUE(plain.ok()) << plain.status();
  const std::vector<ChatMessage> chat = {{"user", "a"}, {"model", "b"}};
  auto doc = BuildChatDocument(**plain, chat, ChatLossMode::kModelTurns);
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(doc.status().message(), HasSubstr("<start_of_turn>"));

  // Present but not special: still refused.
  auto not_special = tokenizer::Tokenizer::FromJson(R"({
    "added_tokens": [
      {"id": 2, "content": "<start_of_turn>", "special": false, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false},
      {"id": 3, "content": "<end_of_turn>", "special": true, "normalized": false,
       "lstrip": false, "rstrip": false, "single_word": false}],
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []}})");
  ASSERT_TRUE(not_special.ok()) << not_special.status();
  doc = BuildChatDocument(**not_special, chat, ChatLossMode::kModelTurns);
  ASSERT_FALSE(doc.ok());
  EXPECT_EQ(doc.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(doc.status().message(), HasSubstr("<start_of_turn>"));
}

}  // namespace
}  // namespace maximus::data

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  if (argc < 2) {
    absl::FPrintF(stderr, "usage: %s PATH/tokenizer.json\n", argv[0]);
    return 2;
  }
  maximus::data::tokenizer_path = new std::string(argv[1]);
  return RUN_ALL_TESTS();
}
