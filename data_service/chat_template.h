// Documents for the token store from plain text and from conversations in
// Gemma's chat format, with the loss mask that says which tokens train.
//
// A conversation renders, per turn, as
//   <start_of_turn>{role}\n{content}<end_of_turn>\n
// with roles "user" and "model" ("assistant" is taken as "model"). A leading
// "system" message is folded into the first user turn as
// "{system}\n\n{user}", as Gemma's own template does (Gemma has no system
// role). No <bos> is added: the packer joins documents with <eos>.
//
// Each turn is tokenised as three separate pieces, header
// "<start_of_turn>{role}\n", content, and footer "<end_of_turn>\n", and the
// pieces concatenated. That is what the model sees at inference: the prompt
// ends with "<start_of_turn>model\n" and generation starts a fresh token, so a
// BPE merge across the header/content boundary would train on token sequences
// the model is never asked to continue.
//
// Content is used as given (not trimmed), and added tokens written in it
// (e.g. a literal "<end_of_turn>") are recognised by the tokenizer as they
// would be in any text.

#ifndef MAXIMUS_DATA_SERVICE_CHAT_TEMPLATE_H_
#define MAXIMUS_DATA_SERVICE_CHAT_TEMPLATE_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "data_service/token_store.h"
#include "tokenizer/tokenizer.h"

namespace maximus::data {

struct ChatMessage {
  std::string role;  // "system", "user", "model" or "assistant".
  std::string content;
};

// Which tokens of a conversation count in the loss. Headers
// ("<start_of_turn>{role}\n") never do: the model does not choose them.
enum class ChatLossMode {
  // Model turns only: each model turn's content and its <end_of_turn>
  // (so the model learns to stop). User turns, headers and the "\n" after
  // every <end_of_turn> get 0.
  kModelTurns,
  // Every turn's content and <end_of_turn> get 1 (user turns too, system
  // text included); headers and the "\n" after <end_of_turn> still get 0, so
  // the only difference from kModelTurns is the user turns.
  kAllTurns,
};

// Plain text -> a document whose every token counts (empty loss mask).
// INVALID_ARGUMENT if `text` is empty or not well-formed UTF-8 (the message
// names the byte offset).
absl::StatusOr<Document> BuildTextDocument(const tokenizer::Tokenizer& tok, absl::string_view text);

// The checks BuildChatDocument makes on a conversation before it encodes
// anything: INVALID_ARGUMENT, naming the message index and field
// ("messages[2].role: ..."), for an empty conversation, an unknown role, a
// system message that is not first or not followed by a user message, or
// content that is not well-formed UTF-8. Turns need not alternate.
absl::Status ValidateChat(absl::Span<const ChatMessage> messages);

// A conversation -> a document with a loss mask, one entry per token.
// INVALID_ARGUMENT as ValidateChat; FAILED_PRECONDITION if the tokenizer
// lacks <start_of_turn> or <end_of_turn> as special added tokens.
absl::StatusOr<Document> BuildChatDocument(const tokenizer::Tokenizer& tok,
                                           absl::Span<const ChatMessage> messages,
                                           ChatLossMode mode);

}  // namespace maximus::data

#endif  // MAXIMUS_DATA_SERVICE_CHAT_TEMPLATE_H_
