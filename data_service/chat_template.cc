#include "data_service/chat_template.h"

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "base/status_macros.h"
#include "tokenizer/utf8.h"

namespace maximus::data {
namespace {

constexpr char kStartOfTurn[] = "<start_of_turn>";
constexpr char kEndOfTurn[] = "<end_of_turn>";

// The added token with `id`, or null. Added tokens are usually listed in id
// order from 0, so the entry at index `id` is tried before a scan.
const tokenizer::AddedToken* FindAddedToken(const tokenizer::Tokenizer& tok, int32_t id) {
  const std::vector<tokenizer::AddedToken>& added = tok.added_tokens();
  if (id >= 0 && static_cast<size_t>(id) < added.size() && added[id].id == id) return &added[id];
  for (const tokenizer::AddedToken& token : added) {
    if (token.id == id) return &token;
  }
  return nullptr;
}

// Id of `content` if it is a special added token (so that Encode never splits
// it and user text cannot spell it by accident of BPE).
absl::StatusOr<int32_t> SpecialTokenId(const tokenizer::Tokenizer& tok, absl::string_view content) {
  const int32_t id = tok.TokenToId(content);
  const tokenizer::AddedToken* token = id >= 0 ? FindAddedToken(tok, id) : nullptr;
  if (token == nullptr || !token->special || token->content != content) {
    return absl::FailedPreconditionError(absl::StrCat("the tokenizer has no special added token ",
                                                      content,
                                                      " (needed by the Gemma chat template)"));
  }
  return id;
}

void Append(const std::vector<int32_t>& ids, uint8_t mask, Document* doc) {
  doc->tokens.insert(doc->tokens.end(), ids.begin(), ids.end());
  doc->loss_mask.insert(doc->loss_mask.end(), ids.size(), mask);
}

}  // namespace

absl::StatusOr<Document> BuildTextDocument(const tokenizer::Tokenizer& tok,
                                           absl::string_view text) {
  if (text.empty()) return absl::InvalidArgumentError("text is empty");
  MAXIMUS_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
                           tok.Encode(text, tokenizer::EncodeOptions{/*add_special_tokens=*/false,
                                                                     /*strict_utf8=*/true}));
  Document doc;
  doc.tokens = std::move(ids);
  return doc;
}

absl::Status ValidateChat(absl::Span<const ChatMessage> messages) {
  if (messages.empty()) return absl::InvalidArgumentError("messages: the conversation is empty");

  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string& role = messages[i].role;
    if (role == "system") {
      if (i != 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "messages[", i, "].role: a \"system\" message is only allowed as the first message"));
      }
      if (messages.size() < 2) {
        return absl::InvalidArgumentError(
            "messages[0].role: a \"system\" message needs a \"user\" message after it");
      }
      if (messages[1].role != "user") {
        return absl::InvalidArgumentError(
            "messages[1].role: the message after \"system\" must be a \"user\" message");
      }
    } else if (role != "user" && role != "model" && role != "assistant") {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "].role: unknown role \"", absl::CHexEscape(role),
                       "\" (expected \"system\", \"user\", \"model\" or \"assistant\")"));
    }
    const size_t bad = tokenizer::FindInvalidUtf8(messages[i].content);
    if (bad != absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "messages[", i, "].content: not valid UTF-8 (ill-formed byte at offset ", bad, ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Document> BuildChatDocument(const tokenizer::Tokenizer& tok,
                                           absl::Span<const ChatMessage> messages,
                                           ChatLossMode mode) {
  // <start_of_turn> reaches the document through the encoded headers; here its
  // presence is checked.
  MAXIMUS_RETURN_IF_ERROR(SpecialTokenId(tok, kStartOfTurn).status());
  MAXIMUS_ASSIGN_OR_RETURN(const int32_t end_id, SpecialTokenId(tok, kEndOfTurn));
  MAXIMUS_RETURN_IF_ERROR(ValidateChat(messages));

  // Header, content and footer are encoded apart (see the header comment).
  const tokenizer::EncodeOptions plain{/*add_special_tokens=*/false, /*strict_utf8=*/true};
  auto encode = [&](absl::string_view text) -> absl::StatusOr<std::vector<int32_t>> {
    return tok.Encode(text, plain);
  };
  MAXIMUS_ASSIGN_OR_RETURN(const std::vector<int32_t> user_header,
                           encode(absl::StrCat(kStartOfTurn, "user\n")));
  MAXIMUS_ASSIGN_OR_RETURN(const std::vector<int32_t> model_header,
                           encode(absl::StrCat(kStartOfTurn, "model\n")));
  MAXIMUS_ASSIGN_OR_RETURN(const std::vector<int32_t> newline, encode("\n"));

  Document doc;
  size_t first = 0;
  std::string folded;  // "{system}\n\n{user}"
  if (messages[0].role == "system") {
    folded = absl::StrCat(messages[0].content, "\n\n", messages[1].content);
    first = 1;
  }
  for (size_t i = first; i < messages.size(); ++i) {
    const bool model = messages[i].role != "user";
    const absl::string_view content =
        (i == 1 && first == 1) ? absl::string_view(folded) : messages[i].content;
    const uint8_t trains = (model || mode == ChatLossMode::kAllTurns) ? 1 : 0;

    Append(model ? model_header : user_header, 0, &doc);
    MAXIMUS_ASSIGN_OR_RETURN(const std::vector<int32_t> body, encode(content));
    Append(body, trains, &doc);
    // The footer: <end_of_turn> trains (it ends the turn), its "\n" does not.
    doc.tokens.push_back(end_id);
    doc.loss_mask.push_back(trains);
    Append(newline, 0, &doc);
  }
  return doc;
}

}  // namespace maximus::data
