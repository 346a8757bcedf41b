#include "tokenizer/added_vocabulary.h"

#include <unicode/uchar.h>

#include "tokenizer/normalizer.h"
#include "tokenizer/utf8.h"

namespace maximus::tokenizer {
namespace {

bool IsWordChar(char32_t cp) {
  if (cp < 0x80)
    return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') ||
           cp == '_';
  return u_isalnum(static_cast<UChar32>(cp));
}

char32_t CodePointBefore(absl::string_view text, size_t end) {
  size_t start = end - 1;
  while (start > 0 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return NextCodePoint(text, &start);
}

}  // namespace

AddedVocabulary::AddedVocabulary(std::vector<AddedToken> tokens,
                                 const std::vector<std::string>& normalized)
    : tokens_(std::move(tokens)) {
  for (size_t i = 0; i < tokens_.size(); ++i) {
    by_id_[tokens_[i].id] = static_cast<int>(i);
    by_content_.emplace(tokens_[i].content, tokens_[i].id);
    if (tokens_[i].content.empty()) continue;
    if (tokens_[i].normalized) {
      if (!normalized[i].empty()) normalized_.Insert(normalized[i], static_cast<int>(i));
    } else {
      raw_.Insert(tokens_[i].content, static_cast<int>(i));
    }
  }
}

void AddedVocabulary::Trie::Insert(absl::string_view key, int token_index) {
  int32_t node = 0;
  for (const char c : key) {
    const uint8_t byte = static_cast<uint8_t>(c);
    int32_t child = Child(node, byte);
    if (child < 0) {
      child = static_cast<int32_t>(terminal_.size());
      terminal_.push_back(-1);
      if (node == 0) {
        root_[byte] = child;
      } else {
        children_[(uint64_t(node) << 8) | byte] = child;
      }
    }
    node = child;
  }
  if (terminal_[node] < 0) terminal_[node] = token_index;  // First definition wins.
}

void AddedVocabulary::Trie::Split(const std::vector<AddedToken>& tokens, absl::string_view text,
                                  std::vector<Section>* out) const {
  if (empty()) {
    if (!text.empty()) out->push_back({text, -1});
    return;
  }
  size_t plain_start = 0, i = 0;
  const size_t n = text.size();
  while (i < n) {
    if (root_[static_cast<uint8_t>(text[i])] < 0) {
      ++i;
      continue;
    }
    // Longest token starting at i that satisfies its single_word condition.
    int best = -1;
    size_t best_end = 0;
    int32_t node = 0;
    for (size_t j = i; j < n; ++j) {
      node = Child(node, static_cast<uint8_t>(text[j]));
      if (node < 0) break;
      const int index = terminal_[node];
      if (index < 0) continue;
      const AddedToken& token = tokens[index];
      if (token.single_word) {
        size_t after = j + 1;
        if ((i > 0 && IsWordChar(CodePointBefore(text, i))) ||
            (after < n && IsWordChar(NextCodePoint(text, &after)))) {
          continue;
        }
      }
      best = index;
      best_end = j + 1;
    }
    if (best < 0) {
      ++i;
      continue;
    }
    const AddedToken& token = tokens[best];
    absl::string_view plain = text.substr(plain_start, i - plain_start);
    if (token.lstrip) plain = TrimJsWhitespace(plain, false, true);
    if (!plain.empty()) out->push_back({plain, -1});
    out->push_back({text.substr(i, best_end - i), token.id});
    i = best_end;
    if (token.rstrip) {
      const absl::string_view rest = TrimJsWhitespace(text.substr(i), true, false);
      i = n - rest.size();
    }
    plain_start = i;
  }
  if (plain_start < n) out->push_back({text.substr(plain_start), -1});
}

}  // namespace maximus::tokenizer
